use super::*;

const A: &str = "a-1.0-1-any.pkg.tar.zst";
const A_SIG: &str = "a-1.0-1-any.pkg.tar.zst.sig";
const B: &str = "b-2.0-1-x86_64.pkg.tar.zst";

fn index() -> CacheIndex {
    CacheIndex::new(vec!["/one".into(), "/two".into()])
}

#[test]
fn a_name_is_added_once_and_removed_when_no_dir_holds_it() {
    let mut ix = index();
    assert_eq!(ix.set(0, A, true), Some(Change::Added(A.into())));
    assert_eq!(ix.set(1, A, true), None);
    assert_eq!(ix.locate(A), Some(PathBuf::from("/one").join(A)));
    assert_eq!(ix.set(0, A, false), None);
    assert_eq!(ix.locate(A), Some(PathBuf::from("/two").join(A)));
    assert_eq!(ix.set(1, A, false), Some(Change::Removed(A.into())));
    assert_eq!(ix.locate(A), None);
    assert_eq!(ix.set(1, A, false), None);
}

#[test]
fn partial_files_databases_and_unsafe_names_are_never_indexed() {
    let mut ix = index();
    for name in [
        "a-1.0-1-any.pkg.tar.zst.part",
        "core.db",
        "download-AbC123",
        "../a-1.0-1-any.pkg.tar.zst",
        ".a-1.0-1-any.pkg.tar.zst",
    ] {
        assert_eq!(ix.set(0, name, true), None, "{name}");
        assert!(!ix.contains(name), "{name}");
    }
    assert!(ix.is_empty());
    assert_eq!(ix.set(0, A_SIG, true), Some(Change::Added(A_SIG.into())));
}

#[test]
fn an_unknown_dir_changes_nothing() {
    let mut ix = index();
    assert_eq!(ix.set(7, A, true), None);
    assert!(ix.is_empty());
}

#[test]
fn replacing_a_dir_reports_only_real_changes() {
    let mut ix = index();
    ix.set(0, A, true);
    ix.set(0, B, true);
    ix.set(1, B, true);
    let changes = ix.replace_dir(0, &[A.to_string(), A_SIG.to_string()]);
    assert_eq!(changes, vec![Change::Added(A_SIG.into())]);
    // B is still held by dir 1, so it did not disappear.
    assert!(ix.contains(B));
    let changes = ix.replace_dir(1, &[]);
    assert_eq!(changes, vec![Change::Removed(B.into())]);
    let mut names: Vec<&str> = ix.names().collect();
    names.sort();
    assert_eq!(names, vec![A, A_SIG]);
}

#[test]
fn rescanning_an_unchanged_dir_changes_nothing() {
    let mut ix = index();
    let listing = [A.to_string(), B.to_string()];
    assert_eq!(
        ix.replace_dir(0, &listing),
        vec![Change::Added(A.into()), Change::Added(B.into())]
    );
    assert_eq!(ix.replace_dir(0, &listing), vec![]);
    assert_eq!(
        ix.replace_dir(0, &[B.to_string(), A_SIG.to_string()]),
        vec![Change::Removed(A.into()), Change::Added(A_SIG.into())]
    );
    assert_eq!(ix.replace_dir(7, &listing), vec![], "no such dir");
}

#[test]
fn child_paths_are_what_join_makes() {
    for dir in [
        "/var/cache/pacman/pkg",
        "/var/cache/pacman/pkg/",
        "rel/dir",
        "/",
        "",
    ] {
        let dir = std::path::Path::new(dir);
        assert_eq!(super::child(dir, A), dir.join(A), "{}", dir.display());
        assert_eq!(super::name_in(dir, &super::child(dir, A)), Some(A));
    }
    let store = std::path::Path::new("/var/lib/pacmesh/store");
    for other in [
        "/var/lib/pacmesh/store2/a",
        "/var/lib/pacmesh/a",
        "/var/lib/pacmesh/store/",
        "/var/lib/pacmesh/store/d/a",
        "/var/lib/pacmesh/store",
    ] {
        assert_eq!(
            super::name_in(store, std::path::Path::new(other)),
            None,
            "{other}"
        );
    }
}
