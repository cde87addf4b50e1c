//! The numeric precision of the encoder's dense layers, chosen at load time.

use std::fmt;
use std::str::FromStr;

/// f32 is exact (the golden tests hold it to a float64 reference); int8
/// stores the dense weights as Q8_0 blocks (and quantizes their inputs the
/// same way) through Candle's quantized matmul: faster, approximate, and an
/// option only (see BENCHMARKS.md for its measured retrieval accuracy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}; expected f32 or int8")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Precision, UnknownPrecision> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "int8" | "q8" | "q8_0" => Ok(Precision::Int8),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for p in [Precision::F32, Precision::Int8] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert!("int4".parse::<Precision>().is_err());
        assert_eq!(Precision::default(), Precision::F32);
    }
}
