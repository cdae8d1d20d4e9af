//! Notary's canonical JSON dialect, written by hand because no crate reproduces it.
//!
//! Two byte forms matter (see `notary-protocol.md` §3):
//!
//! * the **canonical** form, which is what signatures cover: no whitespace, object keys sorted
//!   bytewise, strings with only `"` and `\` escaped (all other characters raw), integers only;
//! * the **envelope** form, which is what files contain: the canonical bytes with `<`, `>`, `&`,
//!   U+2028 and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`.
//!
//! [`canonicalize`] turns any JSON text into the canonical form in one pass. It is strict where
//! the reference would produce metadata that cannot be signed or verified: non-integral numbers,
//! control characters inside strings, lone surrogates, invalid UTF-8 and duplicate keys are
//! errors, never silently rewritten.

use std::cmp::Ordering;
use std::fmt;

/// Objects and arrays nested deeper than this are refused (a stack-overflow guard).
pub const MAX_DEPTH: usize = 100;

/// Why a JSON text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    pub kind: CanonicalErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalErrorKind {
    UnexpectedEnd,
    UnexpectedByte(u8),
    /// A number with a fraction or an exponent. Notary's dialect has integers only.
    Float,
    NumberOutOfRange,
    InvalidEscape,
    LoneSurrogate,
    ControlCharacter,
    InvalidUtf8,
    DuplicateKey(String),
    TooDeep,
    TrailingData,
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CanonicalErrorKind::*;
        match &self.kind {
            UnexpectedEnd => write!(f, "unexpected end of JSON input"),
            UnexpectedByte(b) => write!(
                f,
                "unexpected character {:?} at byte {}",
                char::from(*b),
                self.offset
            ),
            Float => write!(
                f,
                "floating-point number at byte {}: Notary metadata allows integers only",
                self.offset
            ),
            NumberOutOfRange => write!(f, "integer out of range at byte {}", self.offset),
            InvalidEscape => write!(f, "invalid escape sequence at byte {}", self.offset),
            LoneSurrogate => write!(f, "unpaired UTF-16 surrogate at byte {}", self.offset),
            ControlCharacter => write!(
                f,
                "control character in a string at byte {} (not representable in Notary metadata)",
                self.offset
            ),
            InvalidUtf8 => write!(f, "invalid UTF-8 at byte {}", self.offset),
            DuplicateKey(k) => write!(f, "duplicate object key {k:?} at byte {}", self.offset),
            TooDeep => write!(
                f,
                "JSON nested deeper than {MAX_DEPTH} levels at byte {}",
                self.offset
            ),
            TrailingData => write!(f, "trailing data after JSON value at byte {}", self.offset),
        }
    }
}

impl std::error::Error for CanonicalError {}

/// Canonicalize a JSON text: the bytes a Notary signature covers.
pub fn canonicalize(input: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(input.len());
    canonicalize_into(input, &mut out)?;
    Ok(out)
}

/// Like [`canonicalize`], appending to `out`. On error `out` holds partial output.
pub fn canonicalize_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut c = Canonicalizer {
        input,
        pos: 0,
        out,
        depth: 0,
        members: Vec::new(),
    };
    c.skip_ws();
    c.value()?;
    c.skip_ws();
    if c.pos != input.len() {
        return Err(c.err(CanonicalErrorKind::TrailingData));
    }
    Ok(())
}

/// One member of an object being canonicalized, as ranges of the output buffer.
#[derive(Clone, Copy)]
struct Member {
    /// Start of the quoted key.
    start: usize,
    /// End of the quoted key (exclusive, after the closing quote).
    key_end: usize,
    /// End of the member's value.
    end: usize,
}

struct Canonicalizer<'a, 'o> {
    input: &'a [u8],
    pos: usize,
    out: &'o mut Vec<u8>,
    depth: usize,
    /// A stack of members shared by all nesting levels, so objects do not allocate.
    members: Vec<Member>,
}

impl Canonicalizer<'_, '_> {
    fn err(&self, kind: CanonicalErrorKind) -> CanonicalError {
        CanonicalError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, CanonicalError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(CanonicalErrorKind::UnexpectedEnd))
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.input.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                _ => break,
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), CanonicalError> {
        let b = self.peek()?;
        if b != byte {
            return Err(self.err(CanonicalErrorKind::UnexpectedByte(b)));
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<(), CanonicalError> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            b => Err(self.err(CanonicalErrorKind::UnexpectedByte(b))),
        }
    }

    fn enter(&mut self) -> Result<(), CanonicalError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(CanonicalErrorKind::TooDeep));
        }
        Ok(())
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<(), CanonicalError> {
        let end = self.pos + lit.len();
        if self.input.get(self.pos..end) != Some(lit) {
            return Err(match self.input.len() < end {
                true => self.err(CanonicalErrorKind::UnexpectedEnd),
                false => self.err(CanonicalErrorKind::UnexpectedByte(self.input[self.pos])),
            });
        }
        self.out.extend_from_slice(lit);
        self.pos = end;
        Ok(())
    }

    fn number(&mut self) -> Result<(), CanonicalError> {
        let start = self.pos;
        let negative = self.input[self.pos] == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                while matches!(self.input.get(self.pos), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            b => return Err(self.err(CanonicalErrorKind::UnexpectedByte(b))),
        }
        if let Some(b'.' | b'e' | b'E') = self.input.get(self.pos) {
            return Err(CanonicalError {
                offset: start,
                kind: CanonicalErrorKind::Float,
            });
        }
        if let Some(b'0'..=b'9') = self.input.get(self.pos) {
            // A leading zero followed by more digits.
            return Err(self.err(CanonicalErrorKind::UnexpectedByte(self.input[self.pos])));
        }
        let digits = &self.input[digits_start..self.pos];
        // Range: i64 for negatives, u64 for the rest. Lexical comparison works because
        // there are no leading zeros.
        let limit: &[u8] = if negative {
            b"9223372036854775808"
        } else {
            b"18446744073709551615"
        };
        if digits.len() > limit.len() || (digits.len() == limit.len() && digits > limit) {
            return Err(CanonicalError {
                offset: start,
                kind: CanonicalErrorKind::NumberOutOfRange,
            });
        }
        if negative && digits != b"0" {
            self.out.push(b'-');
        }
        self.out.extend_from_slice(digits);
        Ok(())
    }

    fn array(&mut self) -> Result<(), CanonicalError> {
        self.enter()?;
        self.pos += 1;
        self.out.push(b'[');
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                self.value()?;
                self.skip_ws();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.out.push(b',');
                    }
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    b => return Err(self.err(CanonicalErrorKind::UnexpectedByte(b))),
                }
            }
        }
        self.out.push(b']');
        self.depth -= 1;
        Ok(())
    }

    fn object(&mut self) -> Result<(), CanonicalError> {
        self.enter()?;
        let object_offset = self.pos;
        self.pos += 1;
        self.out.push(b'{');
        let body_start = self.out.len();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            self.out.push(b'}');
            self.depth -= 1;
            return Ok(());
        }
        let base = self.members.len();
        let mut sorted = true;
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return Err(self.err(CanonicalErrorKind::UnexpectedByte(self.input[self.pos])));
            }
            let key_offset = self.pos;
            let start = self.out.len();
            self.string()?;
            let key_end = self.out.len();
            if self.members.len() > base {
                let prev = self.members[self.members.len() - 1];
                match cmp_keys(
                    &self.out[start..key_end],
                    &self.out[prev.start..prev.key_end],
                ) {
                    Ordering::Greater => {}
                    Ordering::Less => sorted = false,
                    Ordering::Equal => {
                        return Err(CanonicalError {
                            offset: key_offset,
                            kind: CanonicalErrorKind::DuplicateKey(key_text(
                                &self.out[start..key_end],
                            )),
                        })
                    }
                }
            }
            self.skip_ws();
            self.expect(b':')?;
            self.out.push(b':');
            self.skip_ws();
            self.value()?;
            self.members.push(Member {
                start,
                key_end,
                end: self.out.len(),
            });
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                b'}' => {
                    self.pos += 1;
                    break;
                }
                b => return Err(self.err(CanonicalErrorKind::UnexpectedByte(b))),
            }
        }
        if !sorted {
            self.reorder(base, body_start, object_offset)?;
        }
        self.members.truncate(base);
        self.out.push(b'}');
        self.depth -= 1;
        Ok(())
    }

    /// Sort the members `base..` of the object whose body starts at `body_start`.
    fn reorder(
        &mut self,
        base: usize,
        body_start: usize,
        object_offset: usize,
    ) -> Result<(), CanonicalError> {
        let out = &*self.out;
        let members = &mut self.members[base..];
        members
            .sort_unstable_by(|a, b| cmp_keys(&out[a.start..a.key_end], &out[b.start..b.key_end]));
        for pair in members.windows(2) {
            if out[pair[0].start..pair[0].key_end] == out[pair[1].start..pair[1].key_end] {
                return Err(CanonicalError {
                    offset: object_offset,
                    kind: CanonicalErrorKind::DuplicateKey(key_text(
                        &out[pair[0].start..pair[0].key_end],
                    )),
                });
            }
        }
        let body: Vec<u8> = self.out[body_start..].to_vec();
        self.out.truncate(body_start);
        for (i, m) in self.members[base..].iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(&body[m.start - body_start..m.end - body_start]);
        }
        Ok(())
    }

    /// A string: decode escapes, re-emit with only `"` and `\` escaped.
    fn string(&mut self) -> Result<(), CanonicalError> {
        self.pos += 1; // opening quote
        self.out.push(b'"');
        loop {
            let rest = &self.input[self.pos..];
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or(CanonicalError {
                    offset: self.input.len(),
                    kind: CanonicalErrorKind::UnexpectedEnd,
                })?;
            let chunk = &rest[..run];
            if !chunk.is_ascii() {
                if let Err(e) = std::str::from_utf8(chunk) {
                    return Err(CanonicalError {
                        offset: self.pos + e.valid_up_to(),
                        kind: CanonicalErrorKind::InvalidUtf8,
                    });
                }
            }
            self.out.extend_from_slice(chunk);
            self.pos += run;
            match self.input[self.pos] {
                b'"' => {
                    self.pos += 1;
                    self.out.push(b'"');
                    return Ok(());
                }
                b'\\' => self.escape()?,
                _ => return Err(self.err(CanonicalErrorKind::ControlCharacter)),
            }
        }
    }

    fn escape(&mut self) -> Result<(), CanonicalError> {
        let at = self.pos;
        let bad = |kind| CanonicalError { offset: at, kind };
        let c = *self
            .input
            .get(self.pos + 1)
            .ok_or_else(|| bad(CanonicalErrorKind::UnexpectedEnd))?;
        self.pos += 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' | b'f' | b'n' | b'r' | b't' => {
                return Err(bad(CanonicalErrorKind::ControlCharacter))
            }
            b'u' => {
                let first = self
                    .hex4()
                    .ok_or_else(|| bad(CanonicalErrorKind::InvalidEscape))?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if self.input.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(bad(CanonicalErrorKind::LoneSurrogate));
                        }
                        self.pos += 2;
                        let second = self
                            .hex4()
                            .ok_or_else(|| bad(CanonicalErrorKind::InvalidEscape))?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(bad(CanonicalErrorKind::LoneSurrogate));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(bad(CanonicalErrorKind::LoneSurrogate)),
                    _ => first,
                };
                char::from_u32(code).ok_or_else(|| bad(CanonicalErrorKind::InvalidEscape))?
            }
            _ => return Err(bad(CanonicalErrorKind::InvalidEscape)),
        };
        if (ch as u32) < 0x20 {
            return Err(bad(CanonicalErrorKind::ControlCharacter));
        }
        push_canonical_char(self.out, ch);
        Ok(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.input.get(self.pos..self.pos + 4)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }
}

/// Compare two quoted canonical keys by their decoded bytes, as Go sorts map keys.
fn cmp_keys(a: &[u8], b: &[u8]) -> Ordering {
    let a = &a[1..a.len() - 1];
    let b = &b[1..b.len() - 1];
    if !a.contains(&b'\\') && !b.contains(&b'\\') {
        return a.cmp(b);
    }
    unescaped(a).cmp(unescaped(b))
}

/// The bytes of a canonical string body with its only escapes (`\"`, `\\`) removed.
fn unescaped(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut escaped = false;
    s.iter().filter_map(move |&c| {
        if !escaped && c == b'\\' {
            escaped = true;
            return None;
        }
        escaped = false;
        Some(c)
    })
}

fn key_text(quoted: &[u8]) -> String {
    String::from_utf8_lossy(&quoted[1..quoted.len().saturating_sub(1)]).into_owned()
}

fn push_canonical_char(out: &mut Vec<u8>, ch: char) {
    match ch {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        _ => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Append a JSON string in canonical form: only `"` and `\` escaped.
///
/// Control characters cannot be represented in Notary metadata; callers validate names
/// before they get here, and this function escapes them as `\u00XX` rather than emit raw
/// bytes (such output then fails [`canonicalize`], which is the intended outcome).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{:04x}", b).as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Check output of the typed writers ([`Canonical`]) in one scan, without a copy: it is
/// canonical by construction except where free-form values go (`custom` data, paths),
/// which can hold what has no canonical form: a non-integral number, or a control
/// character (which [`write_str`] writes as a `\u00XX` escape; canonical strings escape
/// only `"` and `\`).
pub fn check_written(bytes: &[u8]) -> Result<(), CanonicalError> {
    let err = |offset, kind| Err(CanonicalError { offset, kind });
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' => {
                    match bytes.get(i + 1) {
                        Some(b'"') | Some(b'\\') => {}
                        _ => return err(i, CanonicalErrorKind::ControlCharacter),
                    }
                    i += 1;
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'.' | b'e' | b'E' if i > 0 && bytes[i - 1].is_ascii_digit() => {
                    return err(i, CanonicalErrorKind::Float)
                }
                _ => {}
            }
        }
        i += 1;
    }
    Ok(())
}

/// Append `canonical` to `out` in envelope form (Go's HTML-safe compaction).
pub fn html_escape_into(canonical: &[u8], out: &mut Vec<u8>) {
    out.reserve(canonical.len());
    let mut start = 0;
    let mut i = 0;
    while i < canonical.len() {
        let esc: &[u8] = match canonical[i] {
            b'<' => b"\\u003c",
            b'>' => b"\\u003e",
            b'&' => b"\\u0026",
            0xE2 if canonical.get(i + 1) == Some(&0x80)
                && matches!(canonical.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                out.extend_from_slice(&canonical[start..i]);
                out.extend_from_slice(if canonical[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&canonical[start..i]);
        out.extend_from_slice(esc);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&canonical[start..]);
}

/// A writer for canonical objects whose fields the caller emits in sorted order.
///
/// Typed metadata is serialized through this instead of a generic tree, so a 100,000-entry
/// targets file is written in one pass with no intermediate allocation per entry.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    #[cfg(debug_assertions)]
    last_key: Option<&'static str>,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter {
            out,
            first: true,
            #[cfg(debug_assertions)]
            last_key: None,
        }
    }

    /// Start a field with a fixed name; the caller then writes its value into the returned
    /// buffer. Fixed names must arrive in bytewise order.
    pub fn field(&mut self, name: &'static str) -> &mut Vec<u8> {
        #[cfg(debug_assertions)]
        {
            if let Some(prev) = self.last_key {
                debug_assert!(prev < name, "canonical field order: {prev} before {name}");
            }
            self.last_key = Some(name);
        }
        self.dynamic_field(name)
    }

    /// Start a field whose name is data (a map key). Map keys must arrive sorted
    /// (iterate a `BTreeMap<String, _>`).
    pub fn dynamic_field(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(b':');
        self.out
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Types with a canonical JSON form.
pub trait Canonical {
    fn write_canonical(&self, out: &mut Vec<u8>);

    /// About how many bytes the canonical form takes (0: unknown). Large bodies say, so
    /// their buffer is allocated once instead of grown by doubling.
    fn canonical_size_hint(&self) -> usize {
        0
    }

    fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_size_hint());
        self.write_canonical(&mut out);
        out
    }
}

impl Canonical for str {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl Canonical for String {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl Canonical for u64 {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa(*self).as_bytes());
    }
}

impl Canonical for bool {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl<T: Canonical> Canonical for [T] {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_canonical(out);
        }
        out.push(b']');
    }
}

impl<T: Canonical> Canonical for Vec<T> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.as_slice().write_canonical(out)
    }
}

impl<K: AsRef<str>, V: Canonical> Canonical for std::collections::BTreeMap<K, V> {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        for (k, v) in self {
            v.write_canonical(o.dynamic_field(k.as_ref()));
        }
        o.finish();
    }
}

/// Generic JSON (used for target `custom` data) in canonical form.
///
/// `serde_json::Map` is a `BTreeMap<String, Value>` (the `preserve_order` feature is off),
/// so iteration is already bytewise sorted.
impl Canonical for serde_json::Value {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        use serde_json::Value;
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => b.write_canonical(out),
            Value::Number(n) => {
                // Values reach here only through `check_integral`, so this is an integer.
                out.extend_from_slice(n.to_string().as_bytes())
            }
            Value::String(s) => write_str(out, s),
            Value::Array(a) => a.write_canonical(out),
            Value::Object(m) => {
                let mut o = ObjectWriter::new(out);
                for (k, v) in m {
                    v.write_canonical(o.dynamic_field(k));
                }
                o.finish();
            }
        }
    }
}

/// Refuse a generic value that has no canonical form (floats, control characters).
pub fn check_value(v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(format!(
            "floating-point number {n}: Notary metadata allows integers only"
        )),
        Value::String(s) if s.chars().any(|c| (c as u32) < 0x20) => {
            Err("control character in a string".into())
        }
        Value::Array(a) => a.iter().try_for_each(check_value),
        Value::Object(m) => m.iter().try_for_each(|(k, v)| {
            if k.chars().any(|c| (c as u32) < 0x20) {
                return Err("control character in an object key".into());
            }
            check_value(v)
        }),
        _ => Ok(()),
    }
}

fn itoa(v: u64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        String::from_utf8(canonicalize(s.as_bytes()).unwrap()).unwrap()
    }

    fn kind(s: &str) -> CanonicalErrorKind {
        canonicalize(s.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        assert_eq!(
            canon(r#" { "b" : 1 , "a" : [ true , null , { "z":0,"y":-3 } ] } "#),
            r#"{"a":[true,null,{"y":-3,"z":0}],"b":1}"#
        );
    }

    #[test]
    fn sorting_is_bytewise_on_utf8() {
        assert_eq!(
            canon(r#"{"é":1,"z":2,"Z":3,"_type":4,"a":5}"#),
            r#"{"Z":3,"_type":4,"a":5,"z":2,"é":1}"#
        );
        // A key that is a prefix of another sorts first, whatever byte follows.
        assert_eq!(canon(r#"{"ab":1,"a":2}"#), r#"{"a":2,"ab":1}"#);
        assert_eq!(canon(r#"{"a ":1,"a":2}"#), r#"{"a":2,"a ":1}"#);
        assert_eq!(canon(r#"{"a!":1,"a":2}"#), r#"{"a":2,"a!":1}"#);
        // Escaped characters sort by what they decode to: '"' (0x22) < '#' < '\\' (0x5c) < ']'.
        assert_eq!(
            canon(r##"{"]":1,"\\":2,"#":3,"\"":4}"##),
            r##"{"\"":4,"#":3,"\\":2,"]":1}"##
        );
        assert_eq!(
            kind(r#"{"\u0061":1,"a":2}"#),
            CanonicalErrorKind::DuplicateKey("a".into())
        );
    }

    #[test]
    fn strings_keep_everything_raw_except_quote_and_backslash() {
        assert_eq!(
            canon(r#"["\u003c\u003e\u0026", "\"\\\/", "\u00fc\u2603", "\ud83d\ude00"]"#),
            "[\"<>&\",\"\\\"\\\\/\",\"ü☃\",\"😀\"]"
        );
    }

    #[test]
    fn numbers_are_integers() {
        assert_eq!(
            canon("[0,-0,12345678901,-7,18446744073709551615]"),
            "[0,0,12345678901,-7,18446744073709551615]"
        );
        assert_eq!(kind("1.5"), CanonicalErrorKind::Float);
        assert_eq!(kind("1e3"), CanonicalErrorKind::Float);
        assert_eq!(kind("1.0"), CanonicalErrorKind::Float);
        assert_eq!(
            kind("18446744073709551616"),
            CanonicalErrorKind::NumberOutOfRange
        );
        assert_eq!(
            kind("-9223372036854775809"),
            CanonicalErrorKind::NumberOutOfRange
        );
        assert!(matches!(
            kind("01"),
            CanonicalErrorKind::UnexpectedByte(b'1')
        ));
        assert!(matches!(kind("-"), CanonicalErrorKind::UnexpectedEnd));
    }

    #[test]
    fn refuses_what_notary_cannot_sign() {
        assert_eq!(kind("\"a\nb\""), CanonicalErrorKind::ControlCharacter);
        assert_eq!(kind(r#""a\nb""#), CanonicalErrorKind::ControlCharacter);
        assert_eq!(kind(r#""\u0001""#), CanonicalErrorKind::ControlCharacter);
        assert_eq!(kind(r#""\ud800""#), CanonicalErrorKind::LoneSurrogate);
        assert_eq!(kind(r#""\udc00x""#), CanonicalErrorKind::LoneSurrogate);
        assert_eq!(kind(r#""\x""#), CanonicalErrorKind::InvalidEscape);
        assert_eq!(
            kind(r#"{"a":1,"a":2}"#),
            CanonicalErrorKind::DuplicateKey("a".into())
        );
        assert_eq!(
            kind(r#"{"b":1,"a":2,"b":3}"#),
            CanonicalErrorKind::DuplicateKey("b".into())
        );
        assert_eq!(kind("{} {}"), CanonicalErrorKind::TrailingData);
        assert_eq!(
            kind(&"[".repeat(MAX_DEPTH + 1)),
            CanonicalErrorKind::TooDeep
        );
        assert_eq!(
            canonicalize(b"\"\xff\"").unwrap_err().kind,
            CanonicalErrorKind::InvalidUtf8
        );
    }

    #[test]
    fn html_escape_matches_go() {
        let mut out = Vec::new();
        html_escape_into("a<b>&c\u{2028}\u{2029}é".as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r"a\u003cb\u003e\u0026c\u2028\u2029é"
        );
    }

    #[test]
    fn canonicalizing_the_envelope_form_gives_back_the_canonical_form() {
        let c = canon(r#"{"n":"weird<tag>&\"q\"","u":"ün☃"}"#);
        let mut env = Vec::new();
        html_escape_into(c.as_bytes(), &mut env);
        assert_eq!(canonicalize(&env).unwrap(), c.as_bytes());
    }
}
