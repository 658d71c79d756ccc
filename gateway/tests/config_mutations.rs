//! No configuration file makes the gateway panic. Each example in `config/examples` is mutated
//! at random (a value replaced, a line deleted, duplicated or moved, the file cut short) and
//! loaded: validation either accepts it or names every problem with its TOML path or line,
//! and a file that validates is turned into forwarding tables or refused with an error,
//! never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use config::{parse_and_validate, ConfigError, Machine};
use proptest::prelude::*;
use std::path::Path;

const MACHINE: Machine = Machine { cores: 2 };

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(texts.len() >= 2, "the examples are the seeds");
    texts
}

/// Values a mutation writes in place of one: addresses, prefixes, MACs and numbers at and past
/// their limits, wrong types, and junk.
const VALUES: &[&str] = &[
    "\"\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"192.0.2.1\"",
    "\"192.0.2.1/33\"",
    "\"fd00::1/129\"",
    "\"10.0.0.0/8\"",
    "\"10.46.0.0/16\"",
    "\"172.18.0.2\"",
    "\"255.255.255.255\"",
    "\"ff02::1\"",
    "\"fe80::1\"",
    "\"00:00:00:00:00:00\"",
    "\"ff:ff:ff:ff:ff:ff\"",
    "\"02:00:00:00:00:01\"",
    "\"ext\"",
    "\"pods\"",
    "\"ran\"",
    "\"gtpu\"",
    "\"vxlan\"",
    "\"ipip\"",
    "\"memory\"",
    "\"af_xdp\"",
    "\"\u{1F600}\"",
    "0",
    "-1",
    "1",
    "63",
    "64",
    "255",
    "256",
    "65535",
    "65536",
    "16777215",
    "16777216",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "1e309",
    "nan",
    "true",
    "[]",
    "[0, 0]",
    "[1, 2, 3, 4, 5, 6, 7, 8]",
    "[\"192.0.2.20\", \"192.0.2.20\"]",
    "{}",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value of the n-th `key = value` line.
    Value(usize, usize),
    /// Delete the n-th line.
    Delete(usize),
    /// Insert a copy of the n-th line after itself.
    Duplicate(usize),
    /// Move the n-th line to the end.
    Move(usize),
    /// Cut the file at this fraction of its length (per mille).
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Mutation::Value(l, v)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
        1 => any::<usize>().prop_map(Mutation::Move),
        1 => (0..1000usize).prop_map(Mutation::Truncate),
    ]
}

fn apply(src: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match *m {
        Mutation::Value(l, v) => {
            let assignments: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains(" = ") && !lines[i].trim_start().starts_with('#'))
                .collect();
            if let Some(&i) = assignments.get(l % assignments.len().max(1)) {
                let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
                lines[i] = format!("{key} = {}", VALUES[v]);
            }
        }
        Mutation::Delete(l) => {
            if !lines.is_empty() {
                lines.remove(l % n);
            }
        }
        Mutation::Duplicate(l) => {
            if !lines.is_empty() {
                let line = lines[l % n].clone();
                lines.insert(l % n + 1, line);
            }
        }
        Mutation::Move(l) => {
            if !lines.is_empty() {
                let line = lines.remove(l % n);
                lines.push(line);
            }
        }
        Mutation::Truncate(per_mille) => {
            let text = lines.join("\n");
            let mut cut = text.len() * per_mille / 1000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_string();
        }
    }
    lines.join("\n") + "\n"
}

/// Loads `src`; returns whether it validated. A refusal must name each problem: a syntax error
/// by its line, a semantic one by its TOML path or line.
fn load(src: &str) -> bool {
    match parse_and_validate(src, "m.toml", Path::new("."), MACHINE) {
        Ok(c) => {
            // Valid: tables are built or refused with an error, never a panic.
            let _ = gateway::tables::build_fib(&c);
            true
        }
        Err(ConfigError::Syntax { problems, .. }) => {
            // Unknown keys met before the syntax error come first; the error itself is last.
            let Some((problem, unknown)) = problems.split_last() else {
                panic!("syntax error without a problem:\n{src}");
            };
            assert!(
                problem.location.is_some(),
                "syntax error without a line: {problem}\n{src}"
            );
            assert!(!problem.message.is_empty());
            for p in unknown {
                assert!(p.location.is_some() || !p.path.0.is_empty(), "{p}\n{src}");
            }
            false
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty(), "refused without a problem:\n{src}");
            for p in &problems {
                assert!(
                    p.location.is_some() || !p.path.0.is_empty(),
                    "problem with neither a path nor a line: {p}\n{src}"
                );
                assert!(!p.message.is_empty(), "problem without a message\n{src}");
            }
            false
        }
        Err(e @ ConfigError::Io { .. }) => panic!("no file is read: {e}"),
    }
}

#[test]
fn every_example_loads_unmutated() {
    for src in examples() {
        assert!(load(&src), "an example must validate:\n{src}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configurations_are_accepted_or_refused_with_their_locations(
        which in 0usize..8,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seeds = examples();
        let mut src = seeds[which % seeds.len()].clone();
        for m in &mutations {
            src = apply(&src, m);
        }
        load(&src);
    }
}

/// The mutations do reach both verdicts: a property that only ever sees refusals (or only
/// acceptances) would prove nothing about the other.
#[test]
fn the_mutations_produce_both_valid_and_invalid_files() {
    let seeds = examples();
    let (mut ok, mut bad) = (0, 0);
    for i in 0..VALUES.len() {
        for l in 0..40 {
            let src = apply(&seeds[(i + l) % seeds.len()], &Mutation::Value(l, i));
            if load(&src) {
                ok += 1;
            } else {
                bad += 1;
            }
        }
    }
    assert!(ok > 0 && bad > 0, "valid {ok}, invalid {bad}");
}
