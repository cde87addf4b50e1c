//! Pseudonymous ids for telemetry.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Returns a short, stable token standing for `id` in logs, spans and
/// traces: the top 48 bits of the 64-bit FNV-1a hash of its UTF-8 bytes, as
/// 12 lowercase hex characters.
///
/// The same id always maps to the same token, in every process and release,
/// so two log lines about one contact can be correlated without showing its
/// email or user id. The token does not contain the id and cannot be decoded,
/// but it is a pseudonym, not anonymisation: anyone holding a candidate id
/// can hash it and look for the token. Never use it as a metric label (it is
/// unbounded) or as a key in storage or routing (48 bits will collide).
pub fn redact_id(id: &str) -> String {
    let hash = id.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    format!("{:012x}", hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_fnv1a_reference_vectors() {
        // Reference values of 64-bit FNV-1a from the FNV test suite.
        assert_eq!(
            redact_id(""),
            format!("{:012x}", 0xcbf2_9ce4_8422_2325_u64 >> 16)
        );
        assert_eq!(
            redact_id("a"),
            format!("{:012x}", 0xaf63_dc4c_8601_ec8c_u64 >> 16)
        );
        assert_eq!(
            redact_id("foobar"),
            format!("{:012x}", 0x8594_4171_f739_67e8_u64 >> 16)
        );
    }

    #[test]
    fn is_stable_short_and_hides_the_input() {
        let email = "ada.lovelace@example.com";
        let token = redact_id(email);
        assert_eq!(token, redact_id(email));
        assert_eq!(token.len(), 12);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!token.contains("ada"));
        assert!(!email.contains(&token));
        assert_ne!(token, redact_id("ada.lovelace@example.org"));
    }
}
