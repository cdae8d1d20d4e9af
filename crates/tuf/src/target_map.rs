//! The targets of a role: names and their file meta.
//!
//! A role read from a file keeps its targets as the bytes of the file's JSON object until
//! they are used, because the common uses need little of them: finding one tag (a pull,
//! `trust verify`) reads past every other entry without building it; listing them all
//! (`trust inspect`) builds one entry at a time and keeps none; signing one more tag
//! keeps the change beside the bytes and writes the merged, canonical result in one pass.
//! A repository of 100,000 tags is never a 100,000-entry map unless asked for one.
//!
//! Entries are checked when they are read (name grammar, hashes, duplicates), so every
//! way of reading them gives the same answer for the same bytes; the server checks all
//! of them on upload ([`TargetMap::check_all`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::{ControlFlow, Range};
use std::sync::Arc;

use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;

use crate::canonical::{Canonical, ObjectWriter};
use crate::metadata::{FileMeta, Text};
use crate::names::TargetName;

#[derive(Clone)]
pub struct TargetMap(Repr);

#[derive(Clone)]
enum Repr {
    /// A JSON object in `bytes[at]`, as the file has it (valid JSON; entries unchecked),
    /// with changes made since (`None`: removed).
    Raw {
        bytes: Arc<[u8]>,
        at: Range<usize>,
        changes: BTreeMap<TargetName, Option<FileMeta>>,
    },
    Map(BTreeMap<TargetName, FileMeta>),
}

impl Default for TargetMap {
    fn default() -> Self {
        TargetMap(Repr::Map(BTreeMap::new()))
    }
}

impl From<BTreeMap<TargetName, FileMeta>> for TargetMap {
    fn from(m: BTreeMap<TargetName, FileMeta>) -> Self {
        TargetMap(Repr::Map(m))
    }
}

impl FromIterator<(TargetName, FileMeta)> for TargetMap {
    fn from_iter<I: IntoIterator<Item = (TargetName, FileMeta)>>(iter: I) -> Self {
        TargetMap(Repr::Map(iter.into_iter().collect()))
    }
}

impl std::fmt::Debug for TargetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Raw { at, changes, .. } => write!(
                f,
                "TargetMap({} bytes unread, {} changes)",
                at.len(),
                changes.len()
            ),
            Repr::Map(m) => f.debug_map().entries(m.iter()).finish(),
        }
    }
}

impl PartialEq for TargetMap {
    fn eq(&self, other: &Self) -> bool {
        if let (
            Repr::Raw {
                bytes: a,
                at: ra,
                changes: ca,
            },
            Repr::Raw {
                bytes: b,
                at: rb,
                changes: cb,
            },
        ) = (&self.0, &other.0)
        {
            if a[ra.clone()] == b[rb.clone()] && ca == cb {
                return true;
            }
        }
        match (self.to_map(), other.to_map()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for TargetMap {}

impl TargetMap {
    pub fn new() -> Self {
        TargetMap::default()
    }

    /// The object at `bytes[at]`, read later. It must be valid JSON (the caller parsed it);
    /// anything but an object is refused now.
    pub(crate) fn raw(bytes: Arc<[u8]>, at: Range<usize>) -> Result<Self, String> {
        if bytes.get(at.clone()).and_then(|b| b.first()) != Some(&b'{') {
            return Err("targets is not an object".into());
        }
        Ok(TargetMap(Repr::Raw {
            bytes,
            at,
            changes: BTreeMap::new(),
        }))
    }

    /// One target's meta. A duplicate of that name, a bad name or bad meta is an error;
    /// other entries are read past, not checked.
    pub fn get(&self, name: &str) -> Result<Option<FileMeta>, String> {
        match &self.0 {
            Repr::Map(m) => Ok(m.get(name).cloned()),
            Repr::Raw { changes, .. } if changes.contains_key(name) => {
                Ok(changes.get(name).cloned().flatten())
            }
            Repr::Raw { bytes, at, .. } => {
                let mut found = None;
                scan(&bytes[at.clone()], Some(name), |n, meta| {
                    if found.is_some() {
                        return Err(format!("duplicate target {n:?}"));
                    }
                    found = Some(meta);
                    Ok(ControlFlow::Continue(()))
                })?;
                Ok(found)
            }
        }
    }

    /// Every target in name order (byte order), each checked; stops at `Break`.
    pub fn visit<'a>(
        &'a self,
        mut f: impl FnMut(Cow<'a, str>, FileMeta) -> ControlFlow<()>,
    ) -> Result<(), String> {
        match &self.0 {
            Repr::Map(m) => {
                for (n, meta) in m {
                    if f(Cow::Borrowed(n.as_str()), meta.clone()).is_break() {
                        break;
                    }
                }
                Ok(())
            }
            Repr::Raw { bytes, at, changes } => {
                let obj = &bytes[at.clone()];
                // Canonical JSON lists names in order, which proves there are no
                // duplicates; an object out of order is read into a map first.
                if !is_sorted_unique(obj)? {
                    for (n, meta) in self.to_map()? {
                        if f(Cow::Owned(n.as_str().to_owned()), meta).is_break() {
                            break;
                        }
                    }
                    return Ok(());
                }
                // Merge the changes (sorted too) into the entries as they stream past.
                let mut pending = changes.iter().peekable();
                let mut stopped = false;
                let mut emit = |n: Cow<'a, str>, meta: FileMeta| {
                    stopped = stopped || f(n, meta).is_break();
                    !stopped
                };
                scan(obj, None, |n, meta| {
                    while let Some((c, m)) = pending.next_if(|(c, _)| c.as_str() < n.as_ref()) {
                        if let Some(m) = m {
                            if !emit(Cow::Borrowed(c.as_str()), m.clone()) {
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                    }
                    let replaced = pending.next_if(|(c, _)| c.as_str() == n.as_ref());
                    let keep = match replaced {
                        Some((_, None)) => true,
                        Some((c, Some(m))) => emit(Cow::Borrowed(c.as_str()), m.clone()),
                        None => emit(n, meta),
                    };
                    Ok(if keep {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    })
                })?;
                for (c, m) in pending {
                    if let Some(m) = m {
                        if !emit(Cow::Borrowed(c.as_str()), m.clone()) {
                            break;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// How many targets (reads them all).
    pub fn count(&self) -> Result<usize, String> {
        match &self.0 {
            Repr::Map(m) => Ok(m.len()),
            Repr::Raw { .. } => {
                let mut n = 0;
                self.visit(|_, _| {
                    n += 1;
                    ControlFlow::Continue(())
                })?;
                Ok(n)
            }
        }
    }

    pub fn is_empty(&self) -> Result<bool, String> {
        let mut any = false;
        self.visit(|_, _| {
            any = true;
            ControlFlow::Break(())
        })?;
        Ok(!any)
    }

    /// Every entry read and checked, as a map.
    pub fn to_map(&self) -> Result<BTreeMap<TargetName, FileMeta>, String> {
        match &self.0 {
            Repr::Map(m) => Ok(m.clone()),
            Repr::Raw { bytes, at, changes } => {
                let mut list: Vec<(TargetName, FileMeta)> = Vec::new();
                let mut sorted = true;
                scan(&bytes[at.clone()], None, |n, meta| {
                    let name = TargetName::new(&n).map_err(|e| e.to_string())?;
                    if let Some((last, _)) = list.last() {
                        sorted &= *last < name;
                    }
                    list.push((name, meta));
                    Ok(ControlFlow::Continue(()))
                })?;
                if !sorted {
                    list.sort_by(|a, b| a.0.cmp(&b.0));
                    if let Some(w) = list.windows(2).find(|w| w[0].0 == w[1].0) {
                        return Err(format!("duplicate target {:?}", w[0].0.as_str()));
                    }
                }
                let mut map: BTreeMap<TargetName, FileMeta> = list.into_iter().collect();
                for (n, m) in changes {
                    match m {
                        Some(m) => map.insert(n.clone(), m.clone()),
                        None => map.remove(n),
                    };
                }
                Ok(map)
            }
        }
    }

    /// Check every entry (the server does, for every role uploaded).
    pub fn check_all(&self) -> Result<(), String> {
        self.visit(|_, _| ControlFlow::Continue(()))
    }

    /// Add or replace a target; false when the same meta was already there. Targets read
    /// from a file stay unread: the change is kept beside them.
    pub fn insert(&mut self, name: TargetName, meta: FileMeta) -> Result<bool, String> {
        if self.get(name.as_str())?.as_ref() == Some(&meta) {
            return Ok(false);
        }
        match &mut self.0 {
            Repr::Map(m) => {
                m.insert(name, meta);
            }
            Repr::Raw { changes, .. } => {
                changes.insert(name, Some(meta));
            }
        }
        Ok(true)
    }

    /// Remove a target; false when it was not there.
    pub fn remove(&mut self, name: &str) -> Result<bool, String> {
        if self.get(name)?.is_none() {
            return Ok(false);
        }
        match &mut self.0 {
            Repr::Map(m) => {
                m.remove(name);
            }
            Repr::Raw { changes, .. } => {
                let name = TargetName::new(name).map_err(|e| e.to_string())?;
                changes.insert(name, None);
            }
        }
        Ok(true)
    }

    /// The whole map, to change freely; reads and checks every entry the first time.
    pub fn make_mut(&mut self) -> Result<&mut BTreeMap<TargetName, FileMeta>, String> {
        if let Repr::Raw { .. } = &self.0 {
            self.0 = Repr::Map(self.to_map()?);
        }
        match &mut self.0 {
            Repr::Map(m) => Ok(m),
            Repr::Raw { .. } => unreachable!("converted above"),
        }
    }
}

impl Canonical for TargetMap {
    fn canonical_size_hint(&self) -> usize {
        match &self.0 {
            Repr::Raw { at, changes, .. } => at.len() + changes.len() * 160,
            Repr::Map(m) => m.len() * 120,
        }
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Map(m) => m.write_canonical(out),
            Repr::Raw { bytes, at, .. } => {
                // Entry by entry, in order, as the map would write them.
                let start = out.len();
                let mut o = ObjectWriter::new(out);
                let read = self.visit(|name, meta| {
                    meta.write_canonical(o.dynamic_field(&name));
                    ControlFlow::Continue(())
                });
                o.finish();
                if read.is_err() {
                    // Not readable as targets: its generic canonical form, else as it is
                    // (the server refuses such a role before it gets here).
                    out.truncate(start);
                    let obj = &bytes[at.clone()];
                    if crate::canonical::canonicalize_into(obj, out).is_err() {
                        out.extend_from_slice(obj);
                    }
                }
            }
        }
    }
}

/// Whether the object's names are in strictly increasing byte order (values skipped).
fn is_sorted_unique(obj: &[u8]) -> Result<bool, String> {
    struct Order<'a> {
        last: Option<Cow<'a, str>>,
        sorted: bool,
    }
    impl<'a> Sink<'a> for Order<'a> {
        fn name(&mut self, name: &Cow<'a, str>) -> Result<Action, String> {
            if self.last.as_ref().is_some_and(|l| l >= name) {
                self.sorted = false;
                return Ok(Action::Stop);
            }
            self.last = Some(name.clone());
            Ok(Action::Skip)
        }
        fn entry(&mut self, _: Cow<'a, str>, _: FileMeta) -> Result<ControlFlow<()>, String> {
            Ok(ControlFlow::Continue(()))
        }
    }
    let mut o = Order {
        last: None,
        sorted: true,
    };
    walk(obj, &mut o)?;
    Ok(o.sorted)
}

/// Entries of the object, names checked against the grammar, each value read as file
/// meta; with `want`, only the entries of that name are read (the rest skipped).
fn scan<'a>(
    obj: &'a [u8],
    want: Option<&str>,
    f: impl FnMut(Cow<'a, str>, FileMeta) -> Result<ControlFlow<()>, String>,
) -> Result<(), String> {
    struct Scan<'w, F> {
        want: Option<&'w str>,
        f: F,
    }
    impl<'a, F> Sink<'a> for Scan<'_, F>
    where
        F: FnMut(Cow<'a, str>, FileMeta) -> Result<ControlFlow<()>, String>,
    {
        fn name(&mut self, name: &Cow<'a, str>) -> Result<Action, String> {
            if self.want.is_some_and(|w| w != name) {
                return Ok(Action::Skip);
            }
            TargetName::new(name).map_err(|e| e.to_string())?;
            Ok(Action::Read)
        }
        fn entry(&mut self, name: Cow<'a, str>, meta: FileMeta) -> Result<ControlFlow<()>, String> {
            (self.f)(name, meta)
        }
    }
    walk(obj, &mut Scan { want, f })
}

enum Action {
    Read,
    Skip,
    Stop,
}

/// What [`walk`] does with each entry.
trait Sink<'a> {
    // The `Cow` itself, so a sink can keep it (cheaply, when borrowed).
    #[allow(clippy::ptr_arg)]
    fn name(&mut self, name: &Cow<'a, str>) -> Result<Action, String>;
    fn entry(&mut self, name: Cow<'a, str>, meta: FileMeta) -> Result<ControlFlow<()>, String>;
}

/// Walk a JSON object's entries (names borrowed when they have no escapes); the sink
/// decides for each whether its value is read as file meta or skipped. After a stop the
/// rest is skipped, so the whole object is always checked to be well-formed JSON.
fn walk<'a>(obj: &'a [u8], sink: &mut dyn Sink<'a>) -> Result<(), String> {
    struct Walker<'s, 'a>(&'s mut dyn Sink<'a>);
    impl<'a> Visitor<'a> for Walker<'_, 'a> {
        type Value = Result<(), String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of targets")
        }
        fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut outcome = Ok(());
            let mut done = false;
            while let Some(Text(name)) = map.next_key::<Text<'a>>()? {
                if done {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                let action = match self.0.name(&name) {
                    Ok(a) => a,
                    Err(e) => {
                        outcome = Err(e);
                        Action::Stop
                    }
                };
                match action {
                    Action::Skip => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    Action::Stop => {
                        map.next_value::<IgnoredAny>()?;
                        done = true;
                    }
                    Action::Read => {
                        // A bad value leaves the parser inside it: the error ends the walk.
                        let meta = map.next_value::<FileMeta>().map_err(|e| {
                            A::Error::custom(format!(
                                "target {:?}: {e}",
                                name.chars().take(100).collect::<String>()
                            ))
                        })?;
                        match self.0.entry(name, meta) {
                            Ok(ControlFlow::Continue(())) => {}
                            Ok(ControlFlow::Break(())) => done = true,
                            Err(e) => {
                                outcome = Err(e);
                                done = true;
                            }
                        }
                    }
                }
            }
            Ok(outcome)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(obj);
    let outcome = (&mut de)
        .deserialize_map(Walker(sink))
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    outcome
}
