//! The raw manifest: the YAML subset customers write, parsed as written, with line numbers.
//!
//! Manifests are hand-written YAML. We read the subset the guide uses (block maps, block lists,
//! plain, single- and double-quoted scalars, comments) with our own line parser rather than a
//! general YAML library, for three reasons: every node keeps its line for error messages; the
//! guide's own examples are not strict YAML (`pinCode:4321` with no space after the colon); and
//! YAML features that change a value's meaning silently (anchors, tags, flow collections, block
//! scalars) are refused with a message instead of being interpreted.
//!
//! Nothing here knows what the fields mean: that is `validate`'s job.

use super::error::{ManifestError, ManifestErrorCode};

/// The largest manifest we read; the guide's largest example is under 2 KiB.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// One `key: value` entry of a block map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written (quotes removed).
    pub key: String,
    /// The 1-based line of the key.
    pub line: usize,
    /// The value.
    pub value: Value,
}

/// A value, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `key:` with nothing after it and nothing indented under it.
    Empty,
    /// A scalar.
    Scalar(Scalar),
    /// A block map.
    Map(Vec<Entry>),
    /// A block list.
    List(Vec<Item>),
}

impl Value {
    /// A short name of the value's shape, for error messages.
    pub fn shape(&self) -> &'static str {
        match self {
            Value::Empty => "nothing",
            Value::Scalar(_) => "a single value",
            Value::Map(_) => "a block of `name: value` lines",
            Value::List(_) => "a list of `- ` lines",
        }
    }
}

/// A scalar value.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text, quotes removed and escapes resolved.
    pub text: String,
    /// Whether the value was in quotes.
    pub quoted: bool,
    /// Whether a ` #` comment followed the value on its line (which YAML drops).
    pub had_comment: bool,
    /// The 1-based line where the value starts.
    pub line: usize,
}

/// One `- ` item of a block list.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The 1-based line of the dash.
    pub line: usize,
    /// The value.
    pub value: Value,
}

/// Field names the guide's examples write without a space after the colon (`pinCode:4321`).
///
/// Strict YAML reads `pinCode:4321` as one string. We accept the form only for the manifest's
/// own field names, so a value such as `- http://host` in a list is never split at its colon.
const KNOWN_FIELDS: &[&str] = &[
    "accessKeyId",
    "acl",
    "archiveComment",
    "beginMarker",
    "bucket",
    "cacheControl",
    "city",
    "company",
    "contentDisposition",
    "contentLanguage",
    "contentTypes",
    "country",
    "customs",
    "dataDescription",
    "defaultContentType",
    "destination",
    "deviceCapacityGreaterThan1TB",
    "deviceCountryOfOrigin",
    "deviceHTS",
    "deviceId",
    "deviceType",
    "deviceValue",
    "diskTimestampMetadataKey",
    "encryptedData",
    "encryptionClassification",
    "endMarker",
    "eraseDevice",
    "expires",
    "exportBucket",
    "exportCertifierName",
    "fileSystem",
    "generator",
    "ignore",
    "logBucket",
    "logPrefix",
    "manifestVersion",
    "name",
    "notificationEmail",
    "operations",
    "phoneNumber",
    "pinCode",
    "postalCode",
    "prefix",
    "recoveryDirectory",
    "region",
    "requiresExportLicense",
    "returnAddress",
    "serviceLevel",
    "setContentEncodingForGzFiles",
    "source",
    "stateOrProvince",
    "staticMetadata",
    "storageClass",
    "street1",
    "street2",
    "street3",
    "substitutions",
    "targetDirectory",
    "trueCryptPassword",
    "typeOfExport",
    "vaultName",
];

/// Keys whose values are secrets: never quoted back in a message.
pub fn is_secret_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("pinCode") || key.eq_ignore_ascii_case("trueCryptPassword")
}

/// Parses manifest text into its top-level entries.
///
/// # Errors
///
/// `MalformedManifest` naming the line, for text that is not UTF-8, too large, badly indented,
/// badly quoted, or uses YAML features manifests do not allow.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(malformed(
            None,
            format!(
                "the manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}. Remove what the job does not need.",
                bytes.len()
            ),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(malformed(
                Some(line),
                "the manifest is not UTF-8 text. Save it as UTF-8 and submit it again.",
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text)?;
    if lines.is_empty() {
        return Err(malformed(
            None,
            "the manifest is empty. Write one `name: value` line per option, starting with `manifestVersion`.",
        ));
    }
    let mut parser = Parser { lines, pos: 0 };
    let indent = parser.lines[0].indent;
    let first = parser.lines[0].clone();
    if is_list_item(&first.text) {
        return Err(malformed(
            Some(first.no),
            "the manifest starts with a `- ` list item; it must be `name: value` lines, starting with `manifestVersion`.",
        ));
    }
    let root = parser.parse_map(indent)?;
    if let Some(line) = parser.lines.get(parser.pos) {
        return Err(malformed(
            Some(line.no),
            format!(
                "this line is indented by {} spaces but the manifest's top-level options start at column {}. Align top-level options on the left.",
                line.indent,
                indent + 1
            ),
        ));
    }
    Ok(root)
}

#[derive(Debug, Clone)]
struct Line {
    /// 1-based line number.
    no: usize,
    /// Columns of leading spaces (or the virtual column of a list item's content).
    indent: usize,
    /// The text after the indentation, trailing whitespace removed.
    text: String,
}

fn malformed(line: Option<usize>, message: impl Into<String>) -> ManifestError {
    ManifestError::new(ManifestErrorCode::MalformedManifest, "", line, message)
}

fn malformed_at(key: &str, line: usize, message: impl Into<String>) -> ManifestError {
    ManifestError::new(
        ManifestErrorCode::MalformedManifest,
        key,
        Some(line),
        message,
    )
}

fn split_lines(text: &str) -> Result<Vec<Line>, ManifestError> {
    let mut out = Vec::new();
    let mut seen_content = false;
    for (i, raw) in text.split('\n').enumerate() {
        let no = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed_end = raw.trim_end();
        let body = trimmed_end.trim_start_matches(' ');
        let indent = trimmed_end.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with('\t') {
            return Err(malformed(
                Some(no),
                "the line is indented with a tab; YAML allows only spaces. Indent with spaces.",
            ));
        }
        if !seen_content && indent == 0 && (body == "---" || body.starts_with("--- ")) {
            if body.len() > 3 && !body[3..].trim_start().starts_with('#') {
                return Err(malformed(
                    Some(no),
                    "write the first option on its own line after `---`.",
                ));
            }
            seen_content = true;
            continue;
        }
        if indent == 0 && body == "..." {
            // YAML's end-of-document marker: what follows is not part of the manifest.
            let more = text
                .split('\n')
                .skip(no)
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if more {
                return Err(malformed(
                    Some(no),
                    "`...` ends the manifest but more text follows. Submit one manifest per job.",
                ));
            }
            break;
        }
        if indent == 0 && body.starts_with("---") {
            return Err(malformed(
                Some(no),
                "a second `---` starts another YAML document. Submit one manifest per job.",
            ));
        }
        if indent == 0 && body.starts_with('%') {
            return Err(malformed(
                Some(no),
                "YAML directives (`%YAML`, `%TAG`) are not allowed in a manifest. Remove the line.",
            ));
        }
        seen_content = true;
        out.push(Line {
            no,
            indent,
            text: body.to_owned(),
        });
    }
    Ok(out)
}

fn is_list_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.pos)
    }

    /// The value under a key (or a list dash) whose own line had nothing after it.
    fn parse_nested(&mut self, parent_indent: usize, key: &str) -> Result<Value, ManifestError> {
        let Some(next) = self.peek() else {
            return Ok(Value::Empty);
        };
        if next.indent > parent_indent {
            let indent = next.indent;
            if is_list_item(&next.text) {
                return self.parse_list(indent);
            }
            if split_key(&next.text, next.no)?.is_some() {
                return Ok(Value::Map(self.parse_map(indent)?));
            }
            return self.parse_continued_scalar(parent_indent, key);
        }
        if next.indent == parent_indent && is_list_item(&next.text) && !key.is_empty() {
            // YAML allows a list under a key at the key's own indentation (`ignore:\n- a`).
            return self.parse_list(parent_indent);
        }
        Ok(Value::Empty)
    }

    /// A plain scalar written on the lines after its key (`trueCryptPassword:\n  secret`).
    fn parse_continued_scalar(
        &mut self,
        parent_indent: usize,
        key: &str,
    ) -> Result<Value, ManifestError> {
        let secret = is_secret_key(key);
        let mut parts: Vec<String> = Vec::new();
        let mut first_line = 0;
        let mut had_comment = false;
        let mut quoted = false;
        while let Some(line) = self.peek() {
            if line.indent <= parent_indent {
                break;
            }
            let line = line.clone();
            if is_list_item(&line.text) || split_key(&line.text, line.no)?.is_some() {
                return Err(malformed_at(
                    key,
                    line.no,
                    format!(
                        "this line continues the value of `{key}` but looks like a new option or list item. Check its indentation."
                    ),
                ));
            }
            let scalar = parse_scalar(&line.text, line.no, key, secret)?;
            if scalar.quoted && !parts.is_empty() {
                return Err(malformed_at(
                    key,
                    line.no,
                    format!("a quoted value of `{key}` must start on the first line of the value."),
                ));
            }
            if first_line == 0 {
                first_line = line.no;
            }
            had_comment |= scalar.had_comment;
            quoted = scalar.quoted;
            parts.push(scalar.text);
            self.pos += 1;
            if quoted {
                break;
            }
        }
        Ok(Value::Scalar(Scalar {
            text: parts.join(" "),
            quoted,
            had_comment,
            line: first_line,
        }))
    }

    fn parse_map(&mut self, indent: usize) -> Result<Vec<Entry>, ManifestError> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            let line = line.clone();
            if line.indent > indent {
                let last = entries.last().map(|e| e.key.as_str()).unwrap_or("");
                return Err(malformed_at(
                    last,
                    line.no,
                    format!(
                        "this line is indented by {} spaces, more than the option above it; only an option written as `name:` with nothing after the colon can have indented lines under it.",
                        line.indent
                    ),
                ));
            }
            if is_list_item(&line.text) {
                let last = entries.last().map(|e| e.key.as_str()).unwrap_or("");
                return Err(malformed_at(
                    last,
                    line.no,
                    "a `- ` list item here does not belong to any option. Put the list under its option (`ignore:` then `  - pattern`).",
                ));
            }
            let Some((key, rest)) = split_key(&line.text, line.no)? else {
                return Err(malformed(
                    Some(line.no),
                    "expected `name: value` here. Write each option as its name, a colon, a space and its value.",
                ));
            };
            if let Some(previous) = entries.iter().find(|e| e.key == key) {
                return Err(malformed_at(
                    &key,
                    line.no,
                    format!(
                        "`{key}` is given twice (lines {} and {}). Keep one.",
                        previous.line, line.no
                    ),
                ));
            }
            self.pos += 1;
            let value = if rest.is_empty() {
                self.parse_nested(indent, &key)?
            } else {
                let scalar = parse_scalar(&rest, line.no, &key, is_secret_key(&key))?;
                self.check_no_continuation(indent, &key, &scalar)?;
                Value::Scalar(scalar)
            };
            entries.push(Entry {
                key,
                line: line.no,
                value,
            });
        }
        Ok(entries)
    }

    /// YAML folds more-indented lines after a plain value into it; we allow that only for
    /// lines that cannot be mistaken for options.
    fn check_no_continuation(
        &mut self,
        indent: usize,
        key: &str,
        scalar: &Scalar,
    ) -> Result<(), ManifestError> {
        if let Some(next) = self.peek() {
            if next.indent > indent {
                let next = next.clone();
                return Err(malformed_at(
                    key,
                    next.no,
                    if scalar.quoted
                        || is_list_item(&next.text)
                        || split_key(&next.text, next.no)?.is_some()
                    {
                        format!(
                            "this line is indented under `{key}`, which already has a value on line {}. Remove the value after `{key}:` to nest options under it, or fix the indentation.",
                            scalar.line
                        )
                    } else {
                        format!(
                            "the value of `{key}` seems to continue on this line. Write the whole value on line {}.",
                            scalar.line
                        )
                    },
                ));
            }
        }
        Ok(())
    }

    fn parse_list(&mut self, indent: usize) -> Result<Value, ManifestError> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_list_item(&line.text) {
                if line.indent > indent {
                    return Err(malformed(
                        Some(line.no),
                        "this line is indented more than the list item above it but is not part of it. Check its indentation.",
                    ));
                }
                break;
            }
            let line = line.clone();
            let after_dash = &line.text[1..];
            let rest = after_dash.trim_start_matches(' ');
            if rest.is_empty() {
                self.pos += 1;
                let value = self.parse_nested(indent, "")?;
                items.push(Item {
                    line: line.no,
                    value,
                });
                continue;
            }
            // The item's content starts at a virtual column; a map item's further keys align
            // with it (`- exportBucket: a` then `  prefix: b`).
            let column = indent + 1 + (after_dash.len() - rest.len());
            if is_list_item(rest) || split_key(rest, line.no)?.is_some() {
                self.lines[self.pos] = Line {
                    no: line.no,
                    indent: column,
                    text: rest.to_owned(),
                };
                let value = if is_list_item(rest) {
                    self.parse_list(column)?
                } else {
                    Value::Map(self.parse_map(column)?)
                };
                items.push(Item {
                    line: line.no,
                    value,
                });
            } else {
                self.pos += 1;
                let scalar = parse_scalar(rest, line.no, "", false)?;
                self.check_no_continuation(indent, "-", &scalar)?;
                items.push(Item {
                    line: line.no,
                    value: Value::Scalar(scalar),
                });
            }
        }
        Ok(Value::List(items))
    }
}

/// Splits `key: value` (or `"key" : value`, or `knownField:value`) into key and the rest.
fn split_key(text: &str, line: usize) -> Result<Option<(String, String)>, ManifestError> {
    if text.starts_with('"') || text.starts_with('\'') {
        let (key, consumed) = parse_quoted(text, line, "", false)?;
        let after = text[consumed..].trim_start_matches(' ');
        if let Some(rest) = after.strip_prefix(':') {
            if rest.is_empty() || rest.starts_with(' ') {
                return Ok(Some((key, rest.trim().to_owned())));
            }
        }
        return Ok(None);
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            break;
        }
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = text[..i].trim_end();
            if key.is_empty() {
                return Ok(None);
            }
            return Ok(Some((key.to_owned(), text[i + 1..].trim().to_owned())));
        }
    }
    // `pinCode:4321`: the guide's examples omit the space after known field names.
    if let Some((key, rest)) = text.split_once(':') {
        if KNOWN_FIELDS.contains(&key) {
            return Ok(Some((key.to_owned(), rest.trim().to_owned())));
        }
    }
    Ok(None)
}

/// Parses one scalar: plain, `'single'` or `"double"` quoted.
fn parse_scalar(text: &str, line: usize, key: &str, secret: bool) -> Result<Scalar, ManifestError> {
    if text.starts_with('"') || text.starts_with('\'') {
        let (value, consumed) = parse_quoted(text, line, key, secret)?;
        let after = text[consumed..].trim_start();
        let had_comment = after.starts_with('#');
        if !after.is_empty() && !had_comment {
            return Err(malformed_at(
                key,
                line,
                "text follows the closing quote. Put the whole value inside the quotes.",
            ));
        }
        return Ok(Scalar {
            text: value,
            quoted: true,
            had_comment,
            line,
        });
    }
    let first = text.chars().next().unwrap_or(' ');
    if first == '[' && text.ends_with(']') && text.contains(' ') && !secret {
        return Err(malformed_at(
            key,
            line,
            format!("`{text}` looks like a placeholder from the guide's template. Replace it with your value."),
        ));
    }
    let meaning = match first {
        '&' => Some("an anchor"),
        '*' => Some("an alias"),
        '!' => Some("a tag"),
        '|' | '>' => Some("a block scalar"),
        '{' => Some("a flow map"),
        '[' => Some("a flow list"),
        '%' | '@' | '`' => Some("a reserved character"),
        '?' if text.len() == 1 || text[1..].starts_with(' ') => Some("a complex key"),
        _ => None,
    };
    if let Some(meaning) = meaning {
        let shown = if secret {
            String::from("this value")
        } else {
            format!("`{text}`")
        };
        return Err(malformed_at(
            key,
            line,
            format!(
                "{shown} starts with `{}`, which YAML reads as {meaning}. Put the value in single quotes: '...'.",
                if secret { '?' } else { first }
            ),
        ));
    }
    let (value, had_comment) = match text.find(" #") {
        Some(i) => (text[..i].trim_end(), true),
        None => (text, false),
    };
    Ok(Scalar {
        text: value.to_owned(),
        quoted: false,
        had_comment,
        line,
    })
}

/// Parses a quoted string at the start of `text`; returns it and the bytes consumed.
fn parse_quoted(
    text: &str,
    line: usize,
    key: &str,
    secret: bool,
) -> Result<(String, usize), ManifestError> {
    let mut chars = text.char_indices();
    let quote = match chars.next() {
        Some((_, q)) => q,
        None => return Err(malformed_at(key, line, "expected a quoted value.")),
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if quote == '\'' && text[i + 1..].starts_with('\'') {
                out.push('\'');
                chars.next();
                continue;
            }
            return Ok((out, i + 1));
        }
        if quote == '"' && c == '\\' {
            let Some((_, e)) = chars.next() else { break };
            let simple = match e {
                '0' => Some('\0'),
                'a' => Some('\u{7}'),
                'b' => Some('\u{8}'),
                't' | '\t' => Some('\t'),
                'n' => Some('\n'),
                'v' => Some('\u{b}'),
                'f' => Some('\u{c}'),
                'r' => Some('\r'),
                'e' => Some('\u{1b}'),
                ' ' => Some(' '),
                '"' => Some('"'),
                '/' => Some('/'),
                '\\' => Some('\\'),
                'N' => Some('\u{85}'),
                '_' => Some('\u{a0}'),
                'L' => Some('\u{2028}'),
                'P' => Some('\u{2029}'),
                _ => None,
            };
            if let Some(s) = simple {
                out.push(s);
                continue;
            }
            let digits = match e {
                'x' => 2,
                'u' => 4,
                'U' => 8,
                _ => {
                    let shown = if secret {
                        String::new()
                    } else {
                        format!(" `\\{e}`")
                    };
                    return Err(malformed_at(
                        key,
                        line,
                        format!(
                            "unknown escape sequence{shown} in a double-quoted value. Inside double quotes a backslash starts an escape; use single quotes to keep backslashes as written."
                        ),
                    ));
                }
            };
            let mut code = 0u32;
            for _ in 0..digits {
                let digit = chars.next().and_then(|(_, d)| d.to_digit(16));
                let Some(digit) = digit else {
                    return Err(malformed_at(
                        key,
                        line,
                        format!("`\\{e}` must be followed by {digits} hexadecimal digits."),
                    ));
                };
                code = code * 16 + digit;
            }
            let Some(c) = char::from_u32(code) else {
                return Err(malformed_at(
                    key,
                    line,
                    "an escape sequence names a code point that is not a character.",
                ));
            };
            out.push(c);
            continue;
        }
        out.push(c);
    }
    let what = if quote == '"' { "double" } else { "single" };
    Err(malformed_at(
        key,
        line,
        format!(
            "the {what}-quoted value has no closing quote on this line. Close the quote on the same line."
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Entry> {
        match parse(text.as_bytes()) {
            Ok(entries) => entries,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn scalar(v: &Value) -> &str {
        match v {
            Value::Scalar(s) => &s.text,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    fn parse_err(text: &str) -> ManifestError {
        match parse(text.as_bytes()) {
            Ok(entries) => panic!("parsed: {entries:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn known_field_without_space_after_colon() {
        let e = parse_ok("pinCode:4321\nmanifestVersion:2.0\n");
        assert_eq!(e[0].key, "pinCode");
        assert_eq!(scalar(&e[0].value), "4321");
        assert_eq!(scalar(&e[1].value), "2.0");
    }

    #[test]
    fn unknown_name_without_space_is_not_split() {
        let err = parse_err("http://example.com\n");
        assert_eq!(err.code, ManifestErrorCode::MalformedManifest);
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn nested_maps_lists_and_map_items() {
        let e = parse_ok(
            "returnAddress:\n  name: Jane\n  city: X\nignore:\n- a\n- b  # comment\noperations:\n  - exportBucket: b1\n    prefix: p\n  - exportBucket: b2\n",
        );
        let Value::Map(addr) = &e[0].value else {
            panic!()
        };
        assert_eq!(addr[1].key, "city");
        assert_eq!(addr[1].line, 3);
        let Value::List(ignore) = &e[1].value else {
            panic!()
        };
        assert_eq!(scalar(&ignore[1].value), "b");
        let Value::List(ops) = &e[2].value else {
            panic!()
        };
        assert_eq!(ops.len(), 2);
        let Value::Map(op) = &ops[0].value else {
            panic!()
        };
        assert_eq!(op[1].key, "prefix");
        assert_eq!(op[1].line, 9);
    }

    #[test]
    fn quoted_keys_and_values() {
        let e = parse_ok(
            "substitutions:\n  \"$QUOTE$\" : \"\\\"\"\n  ':' : 'it''s'\n  $COLON$ : \":\"\n",
        );
        let Value::Map(subs) = &e[0].value else {
            panic!()
        };
        assert_eq!(subs[0].key, "$QUOTE$");
        assert_eq!(scalar(&subs[0].value), "\"");
        assert_eq!(subs[1].key, ":");
        assert_eq!(scalar(&subs[1].value), "it's");
        assert_eq!(subs[2].key, "$COLON$");
        assert_eq!(scalar(&subs[2].value), ":");
    }

    #[test]
    fn value_on_the_next_line() {
        let e = parse_ok("trueCryptPassword:\n  SimpleButEasilyCrackedEXAMPLE\nx: y\n");
        assert_eq!(scalar(&e[0].value), "SimpleButEasilyCrackedEXAMPLE");
        assert_eq!(e[1].key, "x");
    }

    #[test]
    fn trailing_whitespace_crlf_bom_and_document_marker() {
        let e = parse_ok("\u{feff}---\r\nmanifestVersion: 2.0  \r\ndeviceId: A \r\n");
        assert_eq!(scalar(&e[0].value), "2.0");
        assert_eq!(scalar(&e[1].value), "A");
    }

    #[test]
    fn duplicate_key_names_both_lines() {
        let err = parse_err("deviceId: A\nbucket: b\ndeviceId: B\n");
        assert_eq!(err.field, "deviceId");
        assert!(err.message.contains("lines 1 and 3"), "{}", err.message);
    }

    #[test]
    fn tab_indentation_is_refused() {
        let err = parse_err("returnAddress:\n\tname: x\n");
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("tab"));
    }

    #[test]
    fn yaml_indicators_are_refused_with_advice() {
        let err = parse_err("ignore:\n  - [Tt]humbs\\.db$\n");
        assert!(err.message.contains("flow list"), "{}", err.message);
        assert!(err.message.contains("single quotes"));
        let err = parse_err("deviceId: &a x\n");
        assert!(err.message.contains("anchor"));
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        let err = parse_err("trueCryptPassword: *hunter2\n");
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let err = parse_err("trueCryptPassword: \"hunter2\\$x\"\n");
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(!err.message.contains("\\$"), "{}", err.message);
    }

    #[test]
    fn unknown_escape_is_named() {
        let err = parse_err("prefix: \"a\\$b\"\n");
        assert!(err.message.contains("`\\$`"), "{}", err.message);
    }

    #[test]
    fn unterminated_quote() {
        let err = parse_err("deviceId: \"abc\n");
        assert_eq!(err.field, "deviceId");
        assert!(err.message.contains("no closing quote"));
    }

    #[test]
    fn over_indented_line_after_value() {
        let err = parse_err("deviceId: A\n  bucket: b\n");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.field, "deviceId");
    }

    #[test]
    fn not_utf8() {
        let err = match parse(b"deviceId: A\nx: \xff\n") {
            Err(e) => e,
            Ok(_) => panic!(),
        };
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("UTF-8"));
    }

    #[test]
    fn empty_manifest() {
        let err = parse_err("# only a comment\n\n");
        assert!(err.message.contains("empty"));
    }

    #[test]
    fn second_document_is_refused() {
        let err = parse_err("deviceId: A\n---\ndeviceId: B\n");
        assert_eq!(err.line, Some(2));
    }
}
