//! Path patterns of a suite's `experiments`: `*` (any run of characters but
//! `/`) and `?` (one character) in any segment, matched against the files on
//! disk, relative to a base folder. Enough for `../experiments/shop-*.yaml`;
//! no `**` and no character classes, so a pattern reads the same in every shell.

use std::path::{Component, Path, PathBuf};

/// Whether `pattern` has a wildcard.
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether `name` matches `pattern` (one path segment).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// The files `pattern` names under `base`, sorted, lexically normalised
/// (`suites/../experiments/a.yaml` is `experiments/a.yaml`). A pattern
/// without wildcards names its one file if it exists. Hidden files (a
/// leading `.`) match only a segment that starts with `.` too.
pub fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let start = if Path::new(pattern).is_absolute() {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    let mut current = vec![start];
    let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    for (k, seg) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        let mut next = Vec::new();
        for dir in &current {
            if !is_pattern(seg) {
                let p = dir.join(seg);
                if (last && p.is_file()) || (!last && p.is_dir()) {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !seg.starts_with('.') {
                    continue;
                }
                let p = e.path();
                if matches(seg, &name) && ((last && p.is_file()) || (!last && p.is_dir())) {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    let mut out: Vec<PathBuf> = current.into_iter().map(|p| normalize(&p)).collect();
    out.sort();
    out.dedup();
    out
}

/// `a/b/../c` as `a/c`, `./a` as `a`, without touching the disk (symlinks
/// aside, which is what a person reading the suite file means).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_within_a_segment() {
        assert!(matches("shop-*.yaml", "shop-web-lose-half.yaml"));
        assert!(matches("*.yaml", ".yaml"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("shop-*.yaml", "shop-web.yml"));
        assert!(!matches("a?c", "ac"));
        assert!(!matches("abc", "abcd"));
    }

    #[test]
    fn patterns_expand_to_sorted_normalised_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("suites")).unwrap();
        std::fs::create_dir_all(root.join("experiments/more")).unwrap();
        for f in ["b.yaml", "a.yaml", "c.yml", ".hidden.yaml", "more/d.yaml"] {
            std::fs::write(root.join("experiments").join(f), "x").unwrap();
        }
        let base = root.join("suites");
        let got = expand(&base, "../experiments/*.yaml");
        assert_eq!(
            got,
            vec![root.join("experiments/a.yaml"), root.join("experiments/b.yaml")]
        );
        assert_eq!(
            expand(&base, "../experiments/*/*.yaml"),
            vec![root.join("experiments/more/d.yaml")]
        );
        assert_eq!(
            expand(&base, "../experiments/c.yml"),
            vec![root.join("experiments/c.yml")]
        );
        assert!(expand(&base, "../experiments/nothing-*.yaml").is_empty());
        assert!(
            expand(&base, "../experiments/more").is_empty(),
            "a folder is not a file"
        );
        assert_eq!(
            normalize(Path::new("suites/../experiments/./a.yaml")),
            PathBuf::from("experiments/a.yaml")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }
}
