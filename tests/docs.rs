//! The documentation holds together: README.md stays a short entry point, every page
//! in docs/ is linked from it, and every relative link in README.md and docs/*.md
//! names a file that exists (and, with a `#fragment` into a Markdown file, a heading
//! of that file). Pure file reads: no Envoy, no build artifacts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The README is the entry point; the manual lives in docs/.
const README_MAX_LINES: usize = 250;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// README.md and every Markdown page in docs/, sorted.
fn pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    pages
}

/// The targets of the inline links `[text](target)` outside fenced code blocks,
/// with their line numbers.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            // A target ends at the first `)` not opened inside it, e.g. `a_(b).md`.
            let mut depth = 0usize;
            let end = after.char_indices().find_map(|(i, c)| match c {
                '(' => {
                    depth += 1;
                    None
                }
                ')' if depth == 0 => Some(i),
                ')' => {
                    depth -= 1;
                    None
                }
                _ => None,
            });
            let Some(end) = end else { break };
            // `[text](target "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push((index + 1, target.to_string()));
            rest = &after[end..];
        }
    }
    found
}

/// The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces
/// as hyphens, `-1`, `-2`… for repeats.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let text = heading.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut repeat = 0;
        while !anchors.insert(anchor.clone()) {
            repeat += 1;
            anchor = format!("{slug}-{repeat}");
        }
    }
    anchors
}

#[test]
fn readme_is_short() {
    let lines = read(&repo_root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; keep it at most {README_MAX_LINES} and move the rest to docs/"
    );
}

#[test]
fn every_relative_link_names_an_existing_file_and_heading() {
    let root = repo_root();
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let shown = page
            .strip_prefix(&root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for (line, target) in links(&text) {
            if target.is_empty() {
                broken.push(format!("{shown}:{line}: empty link target"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{shown}:{line}: {target}: no such file"));
                continue;
            }
            let is_markdown = file.extension().is_some_and(|ext| ext == "md");
            if let (Some(fragment), true) = (fragment, is_markdown) {
                if !anchors(&read(&file)).contains(fragment) {
                    broken.push(format!("{shown}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn readme_links_every_docs_page_and_each_page_links_back() {
    let root = repo_root();
    let readme_links: BTreeSet<String> = links(&read(&root.join("README.md")))
        .into_iter()
        .map(|(_, target)| target.split('#').next().unwrap_or("").to_string())
        .collect();
    let mut missing = Vec::new();
    for page in pages().into_iter().skip(1) {
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        if !readme_links.contains(&format!("docs/{name}")) {
            missing.push(format!("README.md does not link docs/{name}"));
        }
        // The first line after the title says what the page covers and links back.
        let text = read(&page);
        let intro = text
            .lines()
            .skip_while(|line| line.starts_with('#') || line.trim().is_empty())
            .take_while(|line| !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !intro.contains("](../README.md") {
            missing.push(format!(
                "docs/{name}: its opening paragraph does not link back to ../README.md"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_link_scanner_reads_links_and_headings() {
    let text =
        "A [`x`](a/b.md#c-d) and [y](../README.md).\n```\n[not](a link)\n```\n# C `d`\n## C d\n";
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["a/b.md#c-d", "../README.md"]);
    let anchors = anchors(text);
    assert!(
        anchors.contains("c-d") && anchors.contains("c-d-1"),
        "{anchors:?}"
    );
}
