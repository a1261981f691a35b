//! The policy set: the shipped built-in role policies plus the custom policies of the
//! policy directory, parsed and validated against the schema as one unit. A set that
//! fails to load is never half-used: start-up stops, and a reload keeps the old set.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

/// The Cedar schema every policy is validated against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");
/// The built-in role policies.
pub const BUILTIN: &str = include_str!("builtin.cedar");
/// The file name the built-in policies are reported under.
pub const BUILTIN_FILE: &str = "<builtin>";
/// Custom policy ids may not take this prefix (they would shadow the built-ins in audit).
const RESERVED_PREFIX: &str = "builtin.";
/// A policy file larger than this is refused: policies are small, and a huge file is a mistake.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a policy set could not be loaded, pointing at the file and line at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// 1-based; absent when the problem is not in one place (an unreadable file).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.reason),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.reason),
            _ => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The loaded source of one policy, for listing and for locating errors.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub id: String,
    pub file: String,
    pub line: usize,
    pub effect: &'static str,
}

/// A validated policy set and what it was made of.
#[derive(Debug)]
pub struct LoadedPolicies {
    pub set: PolicySet,
    pub schema: Schema,
    pub policies: Vec<PolicyInfo>,
    pub files: Vec<String>,
}

pub fn schema() -> Schema {
    // The schema is part of the binary and covered by tests; it cannot fail here.
    Schema::from_str(SCHEMA).unwrap_or_else(|e| panic!("the built-in Cedar schema is invalid: {e}"))
}

/// Loads the built-ins plus every `*.cedar` file of `dir` (if given), in file-name
/// order, and validates the whole set against the schema (strict mode).
pub fn load(dir: Option<&Path>) -> Result<LoadedPolicies, PolicyError> {
    let mut sources = vec![(BUILTIN_FILE.to_string(), BUILTIN.to_string())];
    if let Some(dir) = dir {
        for path in policy_files(dir)? {
            let name = path.display().to_string();
            let meta = std::fs::metadata(&path).map_err(|e| whole_file(&name, format!("cannot read: {e}")))?;
            if meta.len() > MAX_FILE_BYTES {
                return Err(whole_file(&name, format!("is larger than {MAX_FILE_BYTES} bytes")));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| whole_file(&name, format!("cannot read: {e}")))?;
            sources.push((name, text));
        }
    }
    build(&sources)
}

/// The `*.cedar` files of `dir`, sorted; a missing directory is an error (a typo in
/// the configured path must not silently mean "no custom policies").
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let name = dir.display().to_string();
    let entries =
        std::fs::read_dir(dir).map_err(|e| whole_file(&name, format!("cannot read policy directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| whole_file(&name, format!("cannot read policy directory: {e}")))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses, names and validates `(file, text)` sources into one set.
pub fn build(sources: &[(String, String)]) -> Result<LoadedPolicies, PolicyError> {
    let schema = schema();
    let mut set = PolicySet::new();
    let mut infos = Vec::new();
    for (file, text) in sources {
        let parsed = PolicySet::from_str(text).map_err(|e| located(file, text, &e, e.to_string()))?;
        if parsed.num_of_templates() > 0 {
            return Err(whole_file(file, "policy templates are not supported; write static policies".into()));
        }
        let starts = statement_starts(text);
        for (n, policy) in parsed.policies().enumerate() {
            let line = starts.get(n).map_or(1, |o| line_col(text, *o).0);
            let id = match policy.annotation("id") {
                Some(id) if file != BUILTIN_FILE && id.starts_with(RESERVED_PREFIX) => {
                    return Err(PolicyError {
                        file: file.clone(),
                        line: Some(line),
                        column: None,
                        reason: format!("policy id {id:?}: the prefix {RESERVED_PREFIX:?} is reserved"),
                    });
                }
                Some(id) => id.to_string(),
                None => format!("{}:{line}", short_name(file)),
            };
            let renamed = policy.new_id(PolicyId::new(&id));
            set.add(renamed).map_err(|_| PolicyError {
                file: file.clone(),
                line: Some(line),
                column: None,
                reason: format!("policy id {id:?} is used twice"),
            })?;
            let effect = match policy.effect() {
                cedar_policy::Effect::Permit => "permit",
                cedar_policy::Effect::Forbid => "forbid",
            };
            infos.push(PolicyInfo { id, file: file.clone(), line, effect });
        }
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    if let Some(err) = result.validation_errors().next() {
        let id = err.policy_id().to_string();
        let (file, text) = infos
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| sources.iter().find(|(f, _)| *f == i.file))
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .unwrap_or((BUILTIN_FILE, BUILTIN));
        return Err(located(file, text, err, format!("policy {id:?} does not match the schema: {err}")));
    }
    Ok(LoadedPolicies { set, schema, files: sources.iter().map(|(f, _)| f.clone()).collect(), policies: infos })
}

/// Byte offsets where each top-level statement of a policy file starts. Cedar ends
/// every policy with `;`, which can otherwise occur only inside strings and comments;
/// the parser returns policies in source order, so the n-th start is the n-th policy's.
fn statement_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut at_start = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b if b.is_ascii_whitespace() => {}
            b';' => at_start = true,
            b => {
                if at_start {
                    starts.push(i);
                    at_start = false;
                }
                if b == b'"' {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
            }
        }
        i += 1;
    }
    starts
}

fn short_name(file: &str) -> &str {
    Path::new(file).file_name().and_then(|n| n.to_str()).unwrap_or(file)
}

fn whole_file(file: &str, reason: String) -> PolicyError {
    PolicyError { file: file.to_string(), line: None, column: None, reason }
}

/// An error at the first source span the diagnostic names (or the related ones').
fn located(file: &str, text: &str, diag: &dyn Diagnostic, reason: String) -> PolicyError {
    let offset = first_offset(diag);
    let (line, column) = match offset {
        Some(o) => {
            let (l, c) = line_col(text, o);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let help = diag.help().map(|h| format!(" ({h})")).unwrap_or_default();
    PolicyError { file: file.to_string(), line, column, reason: format!("{reason}{help}") }
}

fn first_offset(diag: &dyn Diagnostic) -> Option<usize> {
    if let Some(mut labels) = diag.labels()
        && let Some(l) = labels.next()
    {
        return Some(l.offset());
    }
    diag.related().and_then(|mut r| r.find_map(first_offset))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(file: &str, text: &str) -> Vec<(String, String)> {
        vec![(BUILTIN_FILE.into(), BUILTIN.into()), (file.into(), text.into())]
    }

    #[test]
    fn builtins_load_and_validate() {
        let loaded = load(None).unwrap();
        assert!(loaded.policies.iter().any(|p| p.id == "builtin.reader"));
        assert!(loaded.policies.iter().all(|p| p.file == BUILTIN_FILE));
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let text = "// ok\npermit (principal, action, resource);\n\nforbid (principal, action resource);\n";
        let err = build(&src("bad.cedar", text)).unwrap_err();
        assert_eq!(err.file, "bad.cedar");
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.column.is_some(), "{err}");
    }

    #[test]
    fn schema_violation_names_file_line_and_reason() {
        let text = "@id(\"fine\")\npermit (principal, action == Ctxguard::Action::\"read\", resource)\nwhen { true };\n\
                    @id(\"typo\")\npermit (principal, action == Ctxguard::Action::\"read\", resource)\n\
                    when { resource.lables.contains(\"x\") };\n";
        let err = build(&src("typo.cedar", text)).unwrap_err();
        assert_eq!(err.file, "typo.cedar");
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("\"typo\""), "{err}");
        assert!(err.reason.contains("lables"), "{err}");
    }

    #[test]
    fn unknown_action_is_a_schema_violation() {
        let text = "permit (principal, action == Ctxguard::Action::\"fly\", resource);";
        let err = build(&src("a.cedar", text)).unwrap_err();
        assert!(err.reason.contains("fly"), "{err}");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn reserved_and_duplicate_ids_are_refused() {
        let reserved = "@id(\"builtin.reader\")\npermit (principal, action, resource);";
        assert!(build(&src("a.cedar", reserved)).unwrap_err().reason.contains("reserved"));
        let dup =
            "@id(\"x\")\npermit (principal, action, resource);\n@id(\"x\")\nforbid (principal, action, resource);";
        let err = build(&src("a.cedar", dup)).unwrap_err();
        assert!(err.reason.contains("twice"), "{err}");
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn unnamed_policies_are_named_after_file_and_line() {
        let text = "\n\nforbid (principal is Ctxguard::Agent, action == Ctxguard::Action::\"delete\", resource);";
        let loaded = build(&src("/etc/ctxguard/policies/agents.cedar", text)).unwrap();
        assert!(loaded.policies.iter().any(|p| p.id == "agents.cedar:3" && p.effect == "forbid"));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = load(Some(Path::new("/nonexistent/ctxguard-policies"))).err().unwrap();
        assert!(err.reason.contains("policy directory"), "{err}");
    }
}
