//! Scans test output for anything shaped like a full fake key (a masked hint passes).

const PREFIXES: &[&str] = &["sk-ant-api03-TEST", "sk-ant-admin01-TEST"];
/// Characters after the prefix that make it a full key rather than a hint.
const FULL_KEY_TAIL: usize = 8;

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Line numbers (1-based) of `output` holding a full fake key.
pub fn lines_with_full_keys(output: &str) -> Vec<usize> {
    output
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            PREFIXES.iter().any(|prefix| {
                line.match_indices(prefix).any(|(at, _)| {
                    let tail = &line.as_bytes()[at + prefix.len()..];
                    tail.iter().take_while(|b| key_char(**b)).count() >= FULL_KEY_TAIL
                })
            })
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_keys_are_found_and_hints_pass() {
        let out = "ok\nkey sk-ant-api03-TESTabcdefgh1234 leaked\nhint sk-ant-api03-TES...T001\nadmin sk-ant-admin01-TESTxyzxyzxyz\nshort sk-ant-api03-TESTab";
        assert_eq!(lines_with_full_keys(out), vec![2, 4]);
    }
}
