//! The numeric precision of the encoder's dense layers, chosen at load time.

use std::fmt;
use std::str::FromStr;

/// f32 is exact (the golden tests hold it to a float64 reference). The two
/// int8 forms are approximate and options only (BENCHMARKS.md has their
/// measured retrieval accuracy): `Int8` is liveseg's own kernel (`gemm_i8`:
/// s8 weights per output channel, u8 inputs per row; AVX-512 VNNI, else AVX2,
/// as the CPU has), the fast one; `Q8_0` is Candle's quantized matmul over
/// 32-value blocks on both sides, closer to f32 and slower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    Int8,
    Q8_0,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::Q8_0 => "q8_0",
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
#[error("unknown precision {0:?}; expected f32, int8 or q8_0")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Precision, UnknownPrecision> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            "q8_0" | "q8" => Ok(Precision::Q8_0),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for p in [Precision::F32, Precision::Int8, Precision::Q8_0] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert!("int4".parse::<Precision>().is_err());
        assert_eq!(Precision::default(), Precision::F32);
    }
}
