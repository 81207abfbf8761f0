//! Tidy checks of task-api's module structure (after rust-analyzer's `xtask/src/tidy.rs`): plain `#[test]`s that
//! read `src/**/*.rs`, so `cargo test` (and so `scripts/test` and CI) fails when a layering rule is broken.
//!
//! - The modules form no import cycle. The graph has one node per top-level module (`src/auth.rs`,
//!   `src/routes/**`, …) and one for the crate root (`src/lib.rs`, which also owns what it defines itself); an edge
//!   for every `crate::…` path (in `use` lines and in code) and every `super::…` path that leaves the module.
//!   Comments are skipped. Paths inside one top-level module (`mcp::tools` → `mcp`) are not edges.
//! - The service layer knows nothing of HTTP: `context`, `events` and `service` use no `actix_web`, and `service`
//!   does not use `crate::error` (`TaskService` returns `ServiceError`; the edges map it).
//!
//! The rule these keep is written down in docs/ARCHITECTURE.md ("task-api layering").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The node of the crate root.
const ROOT: &str = "lib";

/// Modules below the HTTP edge: no actix types.
const NO_HTTP: &[&str] = &["context", "events", "service"];

/// One source file: its top-level module, its module path and its text without comments and string contents.
struct SourceFile {
    path: PathBuf,
    top: String,
    module_path: Vec<String>,
    code: String,
}

/// Where one edge was seen.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn load(src: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(src).expect("under src");
            let mut module_path: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(module_path.last().map(String::as_str), Some("mod" | "lib")) {
                module_path.pop();
            }
            let top = module_path
                .first()
                .cloned()
                .unwrap_or_else(|| ROOT.to_owned());
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            SourceFile {
                path,
                top,
                module_path,
                code: strip(&text),
            }
        })
        .collect()
}

/// The text with comments and the contents of string and char literals blanked out (newlines kept, so line
/// numbers stay right).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && (i == 0 || !is_ident(chars[i - 1]))
        {
            // A raw string: r"…", r#"…"#, …
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{…}'.
            out.push_str("  ");
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident_at(code: &[char], mut i: usize) -> (String, usize) {
    while code.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    let start = i;
    while code.get(i).copied().is_some_and(is_ident) {
        i += 1;
    }
    (code[start..i].iter().collect(), i)
}

/// The first segment of each entry of the `{…}` group that starts at `open`.
fn group_heads(code: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut entry_start = open + 1;
    let mut i = open;
    while i < code.len() {
        match code[i] {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let (head, _) = ident_at(code, entry_start);
                if !head.is_empty() {
                    heads.push(head);
                }
                entry_start = i + 1;
                if code[i] == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The top-level modules (and the root) each `crate::…` / `super::…` path of `file` leads to.
fn targets(file: &SourceFile, modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let code: Vec<char> = file.code.chars().collect();
    let text: String = code.iter().collect();
    let line_of = |pos: usize| code[..pos].iter().filter(|&&c| c == '\n').count() + 1;
    // `crate::x::…` is module `x` when there is one, otherwise an item of the root; a deeper base stays in its
    // top-level module.
    let resolve = |base: &[String], head: &str| -> String {
        match base.first() {
            Some(top) => top.clone(),
            None if modules.contains(head) => head.to_owned(),
            None => ROOT.to_owned(),
        }
    };
    let mut found = Vec::new();
    if file.top == ROOT {
        // The root reaches its modules by their bare names (`routes::configure`).
        let mut i = 0;
        while i < code.len() {
            if is_ident(code[i]) && (i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == ':')) {
                let (head, end) = ident_at(&code, i);
                if code[end..].starts_with(&[':', ':']) && modules.contains(&head) {
                    found.push((head, line_of(i)));
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    for keyword in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(offset) = text[from..].find(keyword) {
            let byte = from + offset;
            from = byte + keyword.len();
            let pos = text[..byte].chars().count();
            if pos > 0 && (is_ident(code[pos - 1]) || code[pos - 1] == '$') {
                continue;
            }
            let mut i = pos + keyword.len();
            let base: Vec<String> = if keyword == "crate::" {
                Vec::new()
            } else {
                // `super::super::x`: climb one module per `super`.
                let mut levels = 1;
                while code[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                    levels += 1;
                    i += 7;
                }
                let depth = file.module_path.len();
                if levels > depth {
                    continue;
                }
                if depth == 1 {
                    // `super::x` from `src/x.rs`: the root's `x` only when `x` is a module; otherwise most likely
                    // an inline module (`mod tests`) reaching its own file.
                    let (head, _) = ident_at(&code, i);
                    if modules.contains(&head) && head != file.top {
                        found.push((head, line_of(pos)));
                    }
                    continue;
                }
                file.module_path[..depth - levels].to_vec()
            };
            let heads = if code.get(i) == Some(&'{') {
                group_heads(&code, i)
            } else {
                vec![ident_at(&code, i).0]
            };
            for head in heads {
                let target = resolve(&base, &head);
                if target != file.top {
                    found.push((target, line_of(pos)));
                }
            }
        }
    }
    found
}

type Graph = BTreeMap<String, BTreeMap<String, Site>>;

fn build_graph(files: &[SourceFile]) -> Graph {
    let mut modules: BTreeSet<String> = files.iter().map(|f| f.top.clone()).collect();
    modules.remove(ROOT);
    let src = src_dir();
    let mut graph: Graph = BTreeMap::new();
    for file in files {
        let edges = graph.entry(file.top.clone()).or_default();
        for (target, line) in targets(file, &modules) {
            edges.entry(target).or_insert_with(|| Site {
                file: file
                    .path
                    .strip_prefix(&src)
                    .unwrap_or(&file.path)
                    .display()
                    .to_string(),
                line,
            });
        }
    }
    graph
}

/// A cycle of `graph`, as the list of its nodes (the first repeated at the end), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).expect("on the stack");
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn describe(cycle: &[String], graph: &Graph) -> String {
    let mut text = format!("import cycle in task-api: {}\n", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        let site = &graph[&pair[0]][&pair[1]];
        let _ = writeln!(
            text,
            "  {} -> {}: src/{}:{}",
            pair[0], pair[1], site.file, site.line
        );
    }
    text.push_str("Break it (docs/ARCHITECTURE.md, \"task-api layering\"): move the shared item down a layer.");
    text
}

#[test]
fn task_api_modules_have_no_import_cycle() {
    let files = load(&src_dir());
    assert!(
        files.len() > 10,
        "the sources were found: {}",
        src_dir().display()
    );
    let graph = build_graph(&files);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", describe(&cycle, &graph));
    }
}

#[test]
fn the_service_layer_knows_no_http() {
    let files = load(&src_dir());
    let mut offences = Vec::new();
    for file in files.iter().filter(|f| NO_HTTP.contains(&f.top.as_str())) {
        for (n, line) in file.code.lines().enumerate() {
            let service_uses_api_error = file.top == "service" && line.contains("crate::error");
            if line.contains("actix_web") || service_uses_api_error {
                offences.push(format!("src/{}.rs:{}: {}", file.top, n + 1, line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "below the HTTP edge (context, events, service) no actix_web, and service returns ServiceError, not \
         ApiError:\n{}",
        offences.join("\n")
    );
}

// The checker itself, on made-up sources.

fn file(path: &str, text: &str) -> SourceFile {
    let mut module_path: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(module_path.last().map(String::as_str), Some("mod" | "lib")) {
        module_path.pop();
    }
    SourceFile {
        path: src_dir().join(path),
        top: module_path
            .first()
            .cloned()
            .unwrap_or_else(|| ROOT.to_owned()),
        module_path,
        code: strip(text),
    }
}

#[test]
fn the_checker_finds_cycles_through_groups_super_and_the_root() {
    let files = [
        file("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        file("a.rs", "use crate::{c::X, b::{Y, Z}};"),
        file("b.rs", "fn f() { crate::d::g() }"),
        file("c.rs", "// use crate::a::Q;\nconst S: &str = \"crate::a\";"),
        file("d/mod.rs", "pub mod e;"),
        file("d/e.rs", "use super::super::a::W;"),
    ];
    let graph = build_graph(&files);
    let cycle = find_cycle(&graph).expect("a -> b -> d -> a");
    assert_eq!(cycle, ["a", "b", "d", "a"]);
    let text = describe(&cycle, &graph);
    assert!(text.contains("d -> a: src/d/e.rs:1"), "{text}");
    assert!(
        !graph["c"].contains_key("a"),
        "comments and strings are no edges"
    );

    let files = [
        file("lib.rs", "pub mod a; pub fn build() {} fn x() { a::f() }"),
        file("a.rs", "use crate::build; mod tests { use super::*; }"),
    ];
    assert_eq!(
        find_cycle(&build_graph(&files)).expect("a uses the root's item"),
        ["a", "lib", "a"]
    );
    let files = [
        file("lib.rs", "pub mod a; pub mod b;"),
        file("a.rs", "use crate::b::X;"),
        file(
            "b.rs",
            "mod tests { use super::*; const S: &str = r#\"crate::a\"#; }",
        ),
    ];
    assert_eq!(find_cycle(&build_graph(&files)), None);
}
