//! The layering of docs/architecture.md, checked on the source: a module may use only
//! modules of lower layers (and itself). A lower layer that imports a higher one, or two
//! modules of one layer that import each other, fail here with the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules from the innermost layer out; modules on one line are peers and
/// may not use each other.
const LAYERS: &[&[&str]] = &[
    &["domain"],
    &["crypto", "net", "logs"],
    &["store"],
    &["jwt"],
    &["integrity"],
    &["audit"],
    &["anomaly"],
    &["authn"],
    &["authz"],
    &["service"],
    &["oauth", "mcp"],
    &["http"],
    &["config"],
    &["app"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/oauth/token.rs` → `oauth`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::<module>` a line names, including each member of a
/// `crate::{a, b::c}` group.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.push(item);
        } else {
            found.push(after.to_string());
        }
        rest = after;
    }
    found
        .into_iter()
        .filter_map(|p| {
            let name: String = p.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (!name.is_empty() && name != "self").then_some(name)
        })
        .collect()
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let own = layer_of(&module).unwrap_or_else(|| panic!("src/{module} is in no layer of LAYERS; add it"));
        let text = std::fs::read_to_string(file).expect("source is readable");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in crate_paths(line) {
                if used == module {
                    continue;
                }
                let Some(theirs) = layer_of(&used) else { continue };
                let place = format!("{}:{}", file.strip_prefix(&src).unwrap_or(file).display(), n + 1);
                if theirs >= own {
                    violations.push(format!("{place}: {module} (layer {own}) uses {used} (layer {theirs})"));
                }
                edges.entry((module.clone(), used)).or_insert(place);
            }
        }
    }
    assert!(violations.is_empty(), "imports that point outward:\n{}", violations.join("\n"));
    // Every module of LAYERS exists, so a renamed module cannot leave the table stale.
    for name in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(src.join(name).is_dir() || src.join(format!("{name}.rs")).is_file(), "src/{name} does not exist");
    }
    assert!(!edges.is_empty(), "the scan found no crate paths at all");
}

#[test]
fn the_scanner_sees_grouped_and_nested_paths() {
    assert_eq!(crate_paths("use crate::{sweeper, telemetry};"), ["sweeper", "telemetry"]);
    assert_eq!(crate_paths("use crate::domain::{A, B};"), ["domain"]);
    assert_eq!(crate_paths("let x = crate::jwt::key_retention(); crate::http::mcp::PATH"), ["jwt", "http"]);
    assert_eq!(crate_paths("use crate::{a::{b, c}, d};"), ["a", "d"]);
}
