//! Control replies as records: the structure of STATUS, STATS and ROUTES
//! answers, shared by the daemon (writes) and host-lib (reads, `--json`).
//!
//! A record is one line: `kind arg... key=value...`. A token is written
//! bare when it is non-empty and holds no whitespace, `"`, `\`, `=` or
//! control character; otherwise in double quotes with `\"`, `\\`, `\n`,
//! `\r`, `\t` and `\xNN` escapes. Every value is cut to [`MAX_VALUE_LEN`]
//! bytes, so one record always fits a frame and a reply of any number of
//! records is sent as several pages ([`page`]), the last one marked.

use std::fmt::{self, Write};

use crate::MAX_TEXT_LEN;

/// Longest value (argument or field) written, in bytes: a 4000-byte client
/// name must not make a record larger than a frame.
pub const MAX_VALUE_LEN: usize = 128;

/// One record of a control reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the record describes: `node`, `app`, `link`, `route`, a counter.
    pub kind: String,
    /// Positional values, in order.
    pub args: Vec<String>,
    /// Named values, in order.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// A record of `kind` with nothing in it yet.
    pub fn new(kind: &str) -> Record {
        Record {
            kind: kind.into(),
            args: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Add a positional value (cut to [`MAX_VALUE_LEN`]).
    pub fn arg(mut self, value: impl fmt::Display) -> Record {
        self.args.push(bounded(value));
        self
    }

    /// Add a named value (cut to [`MAX_VALUE_LEN`]).
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Record {
        self.fields.push((key.into(), bounded(value)));
        self
    }

    /// The named value `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn bounded(value: impl fmt::Display) -> String {
    let mut s = value.to_string();
    if s.len() > MAX_VALUE_LEN {
        let mut end = MAX_VALUE_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='))
}

fn write_token(out: &mut impl Write, s: &str) -> fmt::Result {
    if !needs_quotes(s) {
        return out.write_str(s);
    }
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() && (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_token(f, &self.kind)?;
        for a in &self.args {
            f.write_char(' ')?;
            write_token(f, a)?;
        }
        for (k, v) in &self.fields {
            f.write_char(' ')?;
            write_token(f, k)?;
            f.write_char('=')?;
            write_token(f, v)?;
        }
        Ok(())
    }
}

/// Why a line is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Nothing on the line.
    Empty,
    /// A quoted token without its closing quote.
    Unterminated,
    /// A `\` escape that is not one of the above.
    BadEscape,
    /// `=` with no key before it, or a quoted key.
    BadField,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Empty => "empty record",
            RecordError::Unterminated => "unterminated quote",
            RecordError::BadEscape => "bad escape",
            RecordError::BadField => "field without a key",
        })
    }
}

impl std::error::Error for RecordError {}

/// Read one token from `rest`: (text, was quoted, what follows).
fn read_token(rest: &str) -> Result<(String, bool, &str), RecordError> {
    let Some(quoted) = rest.strip_prefix('"') else {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        return Ok((rest[..end].to_string(), false, &rest[end..]));
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, true, &quoted[i + 1..])),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).map(|(_, h)| h).collect();
                    let b = u8::from_str_radix(&hex, 16).map_err(|_| RecordError::BadEscape)?;
                    out.push(char::from(b));
                }
                _ => return Err(RecordError::BadEscape),
            },
            c => out.push(c),
        }
    }
    Err(RecordError::Unterminated)
}

/// Parse one line written by [`Record`]'s `Display`. Total: any text gives
/// a record or an error.
pub fn parse(line: &str) -> Result<Record, RecordError> {
    let mut rest = line.trim_start();
    if rest.is_empty() {
        return Err(RecordError::Empty);
    }
    let (kind, _, after) = read_token(rest)?;
    if kind.is_empty() {
        return Err(RecordError::BadField);
    }
    let mut record = Record::new(&kind);
    rest = after;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(record);
        }
        let (token, quoted, after) = read_token(rest)?;
        if let Some(value_text) = after.strip_prefix('=') {
            if quoted || token.is_empty() {
                return Err(RecordError::BadField);
            }
            let (value, _, after) = read_token(value_text)?;
            record.fields.push((token, value));
            rest = after;
        } else {
            record.args.push(token);
            rest = after;
        }
    }
}

/// Parse every non-empty line of a reply.
pub fn parse_all(text: &str) -> Result<Vec<Record>, RecordError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse)
        .collect()
}

/// Split records into page texts of at most [`MAX_TEXT_LEN`] bytes each,
/// cut only between records. Always at least one page (maybe empty). A
/// record that could not fit a page alone (impossible with bounded values
/// and a sane number of them) is replaced by `overlong KIND`.
pub fn page(records: &[Record]) -> Vec<String> {
    let mut pages = vec![String::new()];
    for r in records {
        let mut line = r.to_string();
        if line.len() + 1 > MAX_TEXT_LEN {
            line = Record::new("overlong").arg(&r.kind).to_string();
        }
        let last = pages.last_mut().expect("pages start with one");
        if last.len() + line.len() + 1 > MAX_TEXT_LEN {
            pages.push(String::new());
        }
        let last = pages.last_mut().expect("pages start with one");
        last.push_str(&line);
        last.push('\n');
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_with_awkward_values() {
        let r = Record::new("app")
            .arg(16)
            .field("name", "a \"b\" \\ c=d\n\u{1}é")
            .field("ports", "1:10,1:ANY")
            .field("empty", "");
        let line = r.to_string();
        assert!(line.starts_with("app 16 name=\"a \\\"b\\\" \\\\ c=d\\n\\x01é\" ports=1:10"));
        assert_eq!(parse(&line).unwrap(), r);
    }

    #[test]
    fn values_are_bounded_and_pages_fit_frames() {
        let long = "n".repeat(4000);
        let records: Vec<Record> = (0..1000)
            .map(|i| Record::new("app").arg(i).field("name", &long))
            .collect();
        assert_eq!(records[0].get("name").unwrap().len(), MAX_VALUE_LEN);
        let pages = page(&records);
        assert!(pages.len() > 1);
        assert!(pages.iter().all(|p| p.len() <= MAX_TEXT_LEN));
        let back = parse_all(&pages.concat()).unwrap();
        assert_eq!(back, records);
        assert_eq!(page(&[]), vec![String::new()]);
    }

    #[test]
    fn bad_lines_are_errors() {
        for (line, e) in [
            ("", RecordError::Empty),
            ("app \"x", RecordError::Unterminated),
            ("app \"\\q\"", RecordError::BadEscape),
            ("app =3", RecordError::BadField),
            ("app \"k\"=3", RecordError::BadField),
        ] {
            assert_eq!(parse(line), Err(e), "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_is_total(line in ".{0,200}") {
            let _ = parse(&line);
        }

        #[test]
        fn any_values_round_trip(kind in "[a-z_]{1,10}", a in ".{0,40}", v in ".{0,40}") {
            let r = Record::new(&kind).arg(&a).field("k", &v);
            prop_assert_eq!(parse(&r.to_string()).unwrap(), r);
        }
    }
}
