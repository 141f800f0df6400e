//! Countries of return addresses and of the facility: names and ISO codes to alpha-2 codes,
//! and European Union membership (shipments within the EU need no customs information).

use std::str::FromStr;

/// Names people write that the ISO table (celes) does not know, lowercased.
const ALIASES: &[(&str, &str)] = &[
    ("united states of america", "US"),
    ("u.s.a.", "US"),
    ("u.s.a", "US"),
    ("u.s.", "US"),
    ("america", "US"),
    ("uk", "GB"),
    ("u.k.", "GB"),
    ("united kingdom", "GB"),
    ("great britain", "GB"),
    ("britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("northern ireland", "GB"),
    ("the netherlands", "NL"),
    ("deutschland", "DE"),
    ("south korea", "KR"),
    ("korea", "KR"),
    ("republic of korea", "KR"),
    ("russia", "RU"),
    ("vietnam", "VN"),
    ("czechia", "CZ"),
    ("czech republic", "CZ"),
    ("ivory coast", "CI"),
    ("taiwan", "TW"),
    ("hong kong", "HK"),
    ("macau", "MO"),
    ("uae", "AE"),
];

/// The European Union's members (alpha-2).
const EU: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// The ISO 3166-1 alpha-2 code of a country written as a name, an alpha-2 or an alpha-3 code.
pub fn country_code(text: &str) -> Option<&'static str> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    if let Some((_, code)) = ALIASES.iter().find(|(name, _)| *name == lower) {
        return Some(code);
    }
    let lower = lower.strip_prefix("the ").unwrap_or(&lower);
    celes::Country::from_str(lower).ok().map(|c| c.alpha2)
}

/// Whether an alpha-2 code is a member of the European Union.
pub fn is_eu(code: &str) -> bool {
    EU.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        for (text, code) in [
            ("USA", "US"),
            ("United States", "US"),
            ("United States of America", "US"),
            ("us", "US"),
            ("India", "IN"),
            ("Ghana", "GH"),
            ("United Kingdom", "GB"),
            ("GB", "GB"),
            ("Ireland", "IE"),
            ("IRL", "IE"),
            ("The Netherlands", "NL"),
            ("Brazil", "BR"),
        ] {
            assert_eq!(country_code(text), Some(code), "{text}");
        }
        assert_eq!(country_code("Atlantis"), None);
        assert_eq!(country_code(""), None);
    }

    #[test]
    fn eu_membership() {
        assert!(is_eu("IE"));
        assert!(is_eu("DE"));
        assert!(!is_eu("GB"));
        assert!(!is_eu("US"));
    }
}
