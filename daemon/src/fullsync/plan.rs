//! What one run of a full mirror's sync does (pure): which listed
//! packages to fetch (those not kept at their listed size: a kept file
//! was verified before it was renamed in, so a run killed half-way
//! resumes with what it finished), and which kept files go once the new
//! database is served (listed by the old one only, and by no other
//! database the mirror serves).

use std::collections::{BTreeMap, HashMap, HashSet};

/// One run's work.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Listed and not kept (or kept at another size): fetched, by name.
    pub fetch: Vec<String>,
    /// Their bytes.
    pub fetch_bytes: u64,
    /// Listed and kept already.
    pub present: usize,
}

/// `listed`: name → size per the database; `kept`: name → size on disk.
pub fn plan(listed: &BTreeMap<String, u64>, kept: &HashMap<String, u64>) -> SyncPlan {
    let mut out = SyncPlan::default();
    for (name, &size) in listed {
        if kept.get(name) == Some(&size) {
            out.present += 1;
        } else {
            out.fetch.push(name.clone());
            out.fetch_bytes += size;
        }
    }
    out
}

/// The kept files to remove once `new` is served instead of `old`.
pub fn leaving(
    old: &HashSet<String>,
    new: &HashSet<String>,
    listed_elsewhere: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut gone: Vec<String> = old
        .difference(new)
        .filter(|n| !listed_elsewhere(n))
        .cloned()
        .collect();
    gone.sort();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
        items.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn fetches_what_is_missing_or_of_another_size() {
        let listed = map(&[("a", 10), ("b", 20), ("c", 30)]);
        let table: Vec<(Vec<(&str, u64)>, SyncPlan)> = vec![
            (
                vec![],
                SyncPlan {
                    fetch: vec!["a".into(), "b".into(), "c".into()],
                    fetch_bytes: 60,
                    present: 0,
                },
            ),
            // Resumed after a kill: a and c were kept; b was not.
            (
                vec![("a", 10), ("c", 30), ("z", 5)],
                SyncPlan {
                    fetch: vec!["b".into()],
                    fetch_bytes: 20,
                    present: 2,
                },
            ),
            (
                vec![("a", 10), ("b", 19), ("c", 30)],
                SyncPlan {
                    fetch: vec!["b".into()],
                    fetch_bytes: 20,
                    present: 2,
                },
            ),
        ];
        for (kept, want) in table {
            let kept: HashMap<String, u64> =
                kept.iter().map(|(n, s)| (n.to_string(), *s)).collect();
            assert_eq!(plan(&listed, &kept), want, "{kept:?}");
        }
    }

    #[test]
    fn leaves_only_what_no_database_lists() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let old = set(&["p-1", "q-1", "r-1"]);
        let new = set(&["p-2", "q-1", "r-1"]);
        assert_eq!(leaving(&old, &new, |_| false), vec!["p-1".to_string()]);
        assert_eq!(leaving(&old, &new, |n| n == "p-1"), Vec::<String>::new());
        assert_eq!(leaving(&set(&[]), &new, |_| false), Vec::<String>::new());
    }
}
