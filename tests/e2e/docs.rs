//! The map of the code stays true: every file ARCHITECTURE.md names exists, and README
//! links it.

use std::path::Path;

/// Where a path in ARCHITECTURE.md may be relative to: the repository, or a crate's `src`.
const ROOTS: [&str; 5] = ["", "router-service/src", "gateway/src", "core/src", "src"];

/// The backquoted words of `text` that name files or folders: they have a `/` or a file
/// extension, and no spaces, `::` or parentheses.
fn paths(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.contains([' ', '(', '<', '*', '=']) && !word.contains("::"))
        .filter(|word| {
            word.contains('/')
                || [
                    ".rs", ".md", ".lua", ".toml", ".jsonl", ".proto", ".yaml", ".sh",
                ]
                .iter()
                .any(|ext| word.ends_with(ext))
        })
        .collect()
}

#[test]
fn every_path_the_architecture_map_names_exists() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = include_str!("../../ARCHITECTURE.md");
    let named = paths(map);
    assert!(named.len() > 40, "{named:?}");
    // A bare name (`catalog.rs`) may also be relative to the folder named last before it
    // (`router-service/src/engine/`), as a list of a folder's files is written.
    let mut folder = repo.to_path_buf();
    let mut missing = Vec::new();
    for path in named {
        let found = ROOTS
            .iter()
            .map(|root| repo.join(root).join(path))
            .chain(std::iter::once(folder.join(path)))
            .find(|candidate| candidate.exists());
        match found {
            Some(found) if path.ends_with('/') && path.trim_end_matches('/').contains('/') => {
                folder = found
            }
            Some(_) => {}
            None => missing.push(path),
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what is not there: {missing:?}"
    );
    assert!(include_str!("../../README.md").contains("](ARCHITECTURE.md)"));
}

/// The invariant ARCHITECTURE.md states for the router's service: it knows nothing of
/// gRPC, so dependencies point one way (transport → service → store → engine).
#[test]
fn the_routers_service_imports_nothing_of_grpc() {
    for (file, text) in [
        (
            "service/mod.rs",
            include_str!("../../router-service/src/service/mod.rs"),
        ),
        (
            "service/housekeeping.rs",
            include_str!("../../router-service/src/service/housekeeping.rs"),
        ),
    ] {
        assert!(
            !text.contains("grpc::") && !text.contains("tonic"),
            "router-service/src/{file} reaches into the transport"
        );
    }
}
