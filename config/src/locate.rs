//! Maps a TOML path such as `route[2].via[1]` to a byte span in the source, and a byte offset to
//! a 1-based line and column. Used to give every validation problem a location.

use std::ops::Range;

/// One step of a TOML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array (or array-of-tables) index.
    Index(usize),
}

/// A TOML path, printed as `route[2].via[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TomlPath(pub Vec<Seg>);

impl TomlPath {
    /// The path of a top-level key.
    pub fn key(k: &str) -> Self {
        TomlPath(vec![Seg::Key(k.to_string())])
    }
    /// `[[name]]` entry `i`.
    pub fn entry(name: &str, i: usize) -> Self {
        TomlPath(vec![Seg::Key(name.to_string()), Seg::Index(i)])
    }
    /// This path extended with a key.
    pub fn k(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    /// This path extended with an index.
    pub fn i(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for TomlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if n == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A borrowed node of a parsed document: tables from `[[x]]` headers and inline values differ.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child(self, seg: &Seg) -> Option<Node<'a>> {
        use toml_edit::{Item, Value};
        match (seg, self) {
            (_, Node::Item(Item::Table(t))) => Node::Table(t).child(seg),
            (_, Node::Item(Item::Value(v))) => Node::Value(v).child(seg),
            (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => a.get(*i).map(Node::Table),
            (Seg::Key(k), Node::Table(t)) => t.get(k).map(Node::Item),
            (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t.get(k).map(Node::Value),
            (Seg::Index(i), Node::Value(Value::Array(a))) => a.get(*i).map(Node::Value),
            _ => None,
        }
    }
}

/// The span of the deepest item along `path` that the document has (the item itself if it
/// exists, else its nearest ancestor with a span).
pub fn span_of(doc: &toml_edit::Document<String>, path: &TomlPath) -> Option<Range<usize>> {
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in &path.0 {
        match node.child(seg) {
            Some(n) => {
                node = n;
                best = n.span().or(best);
            }
            None => break,
        }
    }
    best
}

/// The span of the key that ends `path` (where an unknown key is written), else what
/// [`span_of`] finds.
pub fn key_span_of(doc: &toml_edit::Document<String>, path: &TomlPath) -> Option<Range<usize>> {
    use toml_edit::{Item, Value};
    if let Some((Seg::Key(k), parent)) = path.0.split_last() {
        let mut node = Node::Item(doc.as_item());
        let mut found = true;
        for seg in parent {
            match node.child(seg) {
                Some(n) => node = n,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            let key = match node {
                Node::Table(t) | Node::Item(Item::Table(t)) => t.key(k),
                Node::Value(Value::InlineTable(t))
                | Node::Item(Item::Value(Value::InlineTable(t))) => t.key(k),
                _ => None,
            };
            if let Some(span) = key.and_then(toml_edit::Key::span) {
                return Some(span);
            }
        }
    }
    span_of(doc, path)
}

/// Where each line of a source starts, to locate many offsets in one pass over it.
pub struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes `src`.
    pub fn new(src: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(
                src.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        LineIndex { src, starts }
    }

    /// 1-based line and column of a byte offset, as [`line_col`] gives them.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let col = String::from_utf8_lossy(&self.src.as_bytes()[start..offset])
            .chars()
            .count()
            + 1;
        (line, col)
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_agrees_with_line_col() {
        let src = "a\nbé c\n\nd\n";
        let idx = LineIndex::new(src);
        for off in 0..=src.len() + 2 {
            if src.is_char_boundary(off.min(src.len())) {
                assert_eq!(idx.line_col(off), line_col(src, off), "offset {off}");
            }
        }
    }

    #[test]
    fn path_prints_like_toml_accessors() {
        let p = TomlPath::entry("route", 2).k("via").i(1);
        assert_eq!(p.to_string(), "route[2].via[1]");
    }

    #[test]
    fn span_of_finds_array_elements_and_falls_back_to_parents() {
        let src = "[gateway]\nname = \"a\"\n[[route]]\nprefix = \"1.0.0.0/8\"\n[[route]]\nvia = [\"a\", \"b\"]\n";
        let doc = toml_edit::Document::parse(src.to_string()).unwrap();
        let s = span_of(&doc, &TomlPath::entry("route", 1).k("via").i(1)).unwrap();
        assert_eq!(&src[s.clone()], "\"b\"");
        assert_eq!(line_col(src, s.start), (6, 13));
        let s = span_of(&doc, &TomlPath::entry("route", 1).k("missing")).unwrap();
        assert_eq!(line_col(src, s.start).0, 5);
        let s = key_span_of(&doc, &TomlPath::entry("route", 1).k("via")).unwrap();
        assert_eq!(line_col(src, s.start), (6, 1));
        let s = key_span_of(
            &doc,
            &TomlPath(vec![Seg::Key("gateway".into()), Seg::Key("name".into())]),
        )
        .unwrap();
        assert_eq!(line_col(src, s.start), (2, 1));
    }
}
