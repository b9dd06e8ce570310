//! The OpenSSH `allowed_signers` file (ssh-keygen(1), ALLOWED SIGNERS): who may sign
//! approvals, with which key, for which namespaces, and when.
//!
//! One signer per line, `PRINCIPALS [OPTIONS] KEYTYPE BASE64-KEY [COMMENT]`; blank lines
//! and `#` comments are skipped. Of the options Rampart reads `namespaces="PATTERNS"`,
//! `valid-after="TIME"` and `valid-before="TIME"` (UTC only: `YYYYMMDD[HHMM[SS]]Z`), and
//! refuses the rest (`cert-authority`: certificates are not supported), so a file never
//! grants more than it says.

use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, PublicKey};

use crate::time::{parse_openssh_utc, rfc3339};

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Line number in the file (1-based).
    pub line: usize,
    /// The principals field as written (`alice@example.com` or a comma-separated list).
    pub principals: String,
    /// What the options restrict.
    options: Options,
    /// The public key.
    key: KeyData,
}

/// The options Rampart reads; none given means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Options {
    /// The `namespaces` pattern list; `None`: any namespace.
    namespaces: Option<String>,
    /// `valid-after` as Unix seconds.
    valid_after: Option<u64>,
    /// `valid-before` as Unix seconds.
    valid_before: Option<u64>,
}

impl Signer {
    /// Why this line does not let its key sign in `namespace` at Unix time `at`, if it
    /// does not.
    fn refusal(&self, namespace: &str, at: u64) -> Option<String> {
        let line = self.line;
        let options = &self.options;
        if let Some(patterns) = &options.namespaces {
            if !matches_pattern_list(namespace, patterns) {
                return Some(format!(
                    "is listed on line {line} only for the namespaces \"{patterns}\", not `{namespace}`"
                ));
            }
        }
        match (options.valid_after, options.valid_before) {
            (Some(after), _) if at < after => Some(format!(
                "is listed on line {line} as valid only from {} (valid-after), the statement is from {}",
                rfc3339(after),
                rfc3339(at)
            )),
            (_, Some(before)) if at > before => Some(format!(
                "is listed on line {line} as valid only until {} (valid-before), the statement is from {}",
                rfc3339(before),
                rfc3339(at)
            )),
            _ => None,
        }
    }
}

/// A parsed `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

impl AllowedSigners {
    /// Reads and parses the file at `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<AllowedSigners, crate::Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::Failure::Usage(format!("allowed_signers {}: {e}", path.display()))
        })?;
        AllowedSigners::parse(&text).map_err(|e| {
            crate::Failure::Invalid(format!("allowed_signers {}: {e}", path.display()))
        })
    }

    /// Parses the text of an `allowed_signers` file; an error names the line.
    pub fn parse(text: &str) -> Result<AllowedSigners, String> {
        let mut signers = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let signer =
                parse_line(index + 1, line).map_err(|e| format!("line {}: {e}", index + 1))?;
            signers.push(signer);
        }
        if signers.is_empty() {
            return Err("lists no signer: nobody could approve".into());
        }
        Ok(AllowedSigners { signers })
    }

    /// How many signer lines the file has.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// The first line that lets `key` sign in `namespace` at Unix time `at`; else why
    /// not, as the end of a sentence about the key ("is not listed", "is listed on
    /// line 3 only for …").
    pub fn find(&self, key: &KeyData, namespace: &str, at: u64) -> Result<&Signer, String> {
        let mut first_refusal = None;
        for signer in self.signers.iter().filter(|s| &s.key == key) {
            match signer.refusal(namespace, at) {
                None => return Ok(signer),
                Some(why) => {
                    first_refusal.get_or_insert(why);
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| "is not listed in allowed_signers".into()))
    }
}

/// One signer line (trimmed, not a comment).
fn parse_line(line: usize, text: &str) -> Result<Signer, String> {
    let (principals, rest) = token(text)?;
    let principals = unquote(principals);
    if principals.is_empty() {
        return Err("no principals".into());
    }
    let (mut next, mut rest) = token(rest)?;
    let mut options = Options::default();
    if !is_key_type(next) {
        options = read_options(next)?;
        (next, rest) = token(rest)?;
        if !is_key_type(next) {
            return Err(format!(
                "`{next}` is not a key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …)"
            ));
        }
    }
    let (base64, _comment) = token(rest)?;
    if base64.is_empty() {
        return Err(format!("no key after the key type `{next}`"));
    }
    let key = PublicKey::from_openssh(&format!("{next} {base64}"))
        .map_err(|e| format!("the {next} key does not parse: {e}"))?;
    Ok(Signer {
        line,
        principals: principals.to_owned(),
        options,
        key: key.key_data().clone(),
    })
}

/// Whether `word` names a key algorithm (else it is the options field).
fn is_key_type(word: &str) -> bool {
    matches!(Algorithm::new(word), Ok(algorithm) if !matches!(algorithm, Algorithm::Other(_)))
}

/// Reads the comma-separated options field.
fn read_options(field: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for option in split_outside_quotes(field, ',')? {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(unquote(value))),
            None => (option, None),
        };
        let name = name.to_ascii_lowercase();
        let value = |what: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value ({what})"))
        };
        let time = |what: &str| -> Result<u64, String> {
            let text = value(what)?;
            parse_openssh_utc(text)
                .ok_or_else(|| format!("{name}: `{text}` is not a UTC time YYYYMMDD[HHMM[SS]]Z"))
        };
        let taken =
            match name.as_str() {
                "namespaces" => options
                    .namespaces
                    .replace(value("a pattern list")?.to_owned())
                    .is_some(),
                "valid-after" => options
                    .valid_after
                    .replace(time("YYYYMMDD[HHMM[SS]]Z")?)
                    .is_some(),
                "valid-before" => options
                    .valid_before
                    .replace(time("YYYYMMDD[HHMM[SS]]Z")?)
                    .is_some(),
                "cert-authority" => return Err(
                    "cert-authority: certificates are not supported; list each approver's own key"
                        .into(),
                ),
                _ => {
                    return Err(format!(
                "unknown option `{name}` (rampart reads namespaces, valid-after and valid-before)"
            ))
                }
            };
        if taken {
            return Err(format!("the option {name} is given twice"));
        }
    }
    Ok(options)
}

/// The first whitespace-separated token of `text` (double quotes may hold spaces) and
/// the rest; an empty token at the end.
fn token(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim_start();
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&text[..at], &text[at..])),
            _ => {}
        }
    }
    if quoted {
        return Err(format!("unterminated quote in `{text}`"));
    }
    Ok((text, ""))
}

/// `text` split at `separator` where it is not inside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (at, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    if quoted {
        return Err(format!("unterminated quote in `{text}`"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// `text` without one pair of surrounding double quotes.
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// Whether `name` matches an OpenSSH pattern list: comma-separated patterns where `*`
/// matches any run of characters and `?` any one; a matching pattern prefixed with `!`
/// refuses, whatever else matches.
pub fn matches_pattern_list(name: &str, list: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if matches_pattern(name.as_bytes(), pattern.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Whether `name` matches one wildcard `pattern` (`*`, `?`), whole.
fn matches_pattern(name: &[u8], pattern: &[u8]) -> bool {
    let (mut n, mut p) = (0, 0);
    // Where the last `*` was, and how much of `name` it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                n += 1;
                p += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again after it.
                Some((star_p, star_n)) => {
                    star = Some((star_p, star_n + 1));
                    p = star_p + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made with `ssh-keygen -t ed25519` and `-t ecdsa`; only the public halves.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpomiZmLYmCxkyB+muk0uDccp4W0zlh1fS0JF+viaov";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBK3bgniLLmAZHFjpbyYNhtqEe8Nnl5tjOqD/enPmbUnG6TP57iQLU2YiKwh20sOkwnBSIOQT1A9hHEX7rAyblWw=";

    fn key(text: &str) -> KeyData {
        PublicKey::from_openssh(text).unwrap().key_data().clone()
    }

    const NOW: u64 = 1_767_268_800; // 2026-01-01T12:00:00Z

    #[test]
    fn lines_with_options_quotes_and_comments_parse() {
        let text = format!(
            "# approvers\n\n\
             alice@example.com {ED25519} alice's laptop\n\
             \"bob@example.com\" namespaces=\"rampart-approval,git\",valid-after=\"20250101Z\",valid-before=\"20270101000000Z\" {ECDSA}\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        assert_eq!(signers.len(), 2);
        let alice = signers
            .find(&key(ED25519), "rampart-approval", NOW)
            .unwrap();
        assert_eq!(
            (alice.line, alice.principals.as_str()),
            (3, "alice@example.com")
        );
        let bob = signers.find(&key(ECDSA), "rampart-approval", NOW).unwrap();
        assert_eq!((bob.line, bob.principals.as_str()), (4, "bob@example.com"));
        assert_eq!(
            bob.options,
            Options {
                namespaces: Some("rampart-approval,git".into()),
                valid_after: Some(1_735_689_600),
                valid_before: Some(1_798_761_600),
            }
        );
    }

    #[test]
    fn a_key_is_refused_outside_its_namespaces_and_validity() {
        let text = format!(
            "ops namespaces=\"git\" {ED25519}\n\
             ops valid-after=\"20260102Z\" {ECDSA}\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        let why = signers
            .find(&key(ED25519), "rampart-approval", NOW)
            .unwrap_err();
        assert!(
            why.contains("line 1 only for the namespaces \"git\""),
            "{why}"
        );
        let why = signers
            .find(&key(ECDSA), "rampart-approval", NOW)
            .unwrap_err();
        assert!(
            why.contains("valid only from 2026-01-02T00:00:00Z"),
            "{why}"
        );
        assert!(signers.find(&key(ECDSA), "x", NOW + 86_400).is_ok());
        // Valid *from* its valid-after time, as ssh-keygen reads it: the exact second counts.
        let valid_after = 1_767_312_000; // 2026-01-02T00:00:00Z
        assert!(signers.find(&key(ECDSA), "x", valid_after).is_ok());
        assert!(signers.find(&key(ECDSA), "x", valid_after - 1).is_err());
        let text = format!("ops valid-before=\"20251231Z\" {ED25519}\n");
        let signers = AllowedSigners::parse(&text).unwrap();
        let why = signers.find(&key(ED25519), "x", NOW).unwrap_err();
        assert!(
            why.contains("valid only until 2025-12-31T00:00:00Z"),
            "{why}"
        );
        assert!(signers.find(&key(ED25519), "x", 1_767_139_200).is_ok());
        // Not listed at all.
        let why = signers.find(&key(ECDSA), "x", NOW).unwrap_err();
        assert_eq!(why, "is not listed in allowed_signers");
    }

    #[test]
    fn a_later_line_for_the_same_key_can_allow_what_an_earlier_one_does_not() {
        let text = format!("git-only namespaces=\"git\" {ED25519}\napprovers {ED25519}\n");
        let signers = AllowedSigners::parse(&text).unwrap();
        let signer = signers
            .find(&key(ED25519), "rampart-approval", NOW)
            .unwrap();
        assert_eq!(signer.principals, "approvers");
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (
                format!("alice cert-authority {ED25519}"),
                "line 1: cert-authority",
            ),
            (
                format!("alice restrict {ED25519}"),
                "line 1: unknown option `restrict`",
            ),
            (
                format!("alice namespaces {ED25519}"),
                "namespaces needs a value",
            ),
            (
                format!("alice valid-after=\"20250101\" {ED25519}"),
                "is not a UTC time",
            ),
            (
                format!("alice namespaces=\"a\",namespaces=\"b\" {ED25519}"),
                "given twice",
            ),
            (
                format!("alice namespaces=\"a {ED25519}"),
                "unterminated quote",
            ),
            ("alice ssh-ed25519".to_owned(), "no key after"),
            ("alice ssh-ed25519 AAAA!!".to_owned(), "does not parse"),
            (
                "alice namespaces=\"x\" notakey AAAA".to_owned(),
                "`notakey` is not a key type",
            ),
            (format!("\n# c\nalice {ECDSA}\nbob\n"), "line 4: "),
            ("# only comments\n".to_owned(), "lists no signer"),
        ];
        for (text, needle) in cases {
            let error = AllowedSigners::parse(&text).unwrap_err();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        // A key type of one algorithm with the key of another does not parse either.
        let swapped = ED25519.replace("ssh-ed25519", "ecdsa-sha2-nistp256");
        assert!(AllowedSigners::parse(&format!("alice {swapped}")).is_err());
    }

    #[test]
    fn quotes_hold_spaces_and_must_close() {
        let text = format!("\"ops team\" namespaces=\"rampart-approval\" {ED25519} a comment\n");
        let signers = AllowedSigners::parse(&text).unwrap();
        let ops = signers
            .find(&key(ED25519), "rampart-approval", NOW)
            .unwrap();
        assert_eq!(ops.principals, "ops team");
        let error = AllowedSigners::parse(&format!("\"alice {ED25519}\n")).unwrap_err();
        assert!(error.contains("line 1: unterminated quote"), "{error}");
    }

    #[test]
    fn pattern_lists_match_like_openssh() {
        let yes = [
            ("rampart-approval", "rampart-approval"),
            ("rampart-approval", "git,rampart-approval"),
            ("rampart-approval", "rampart-*"),
            ("rampart-approval", "*"),
            ("rampart-approval", "*-approval"),
            ("rampart-approval", "ram?art-approval"),
            ("rampart-approval", "r*a*l"),
            ("abcabd", "*abd"),
            ("", "*"),
        ];
        for (name, list) in yes {
            assert!(matches_pattern_list(name, list), "{name} ~ {list}");
        }
        let no = [
            ("rampart-approval", "git"),
            ("rampart-approval", "rampart"),
            ("rampart-approval", "rampart-approvals"),
            ("rampart-approval", "*,!rampart-*"),
            ("rampart-approval", "!rampart-approval"),
            ("rampart-approval", "Rampart-approval"),
            ("rampart-approval", "?"),
            ("rampart-approval", ""),
            ("abcabe", "*abd"),
        ];
        for (name, list) in no {
            assert!(!matches_pattern_list(name, list), "{name} !~ {list}");
        }
    }
}
