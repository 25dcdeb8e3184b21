//! The README's Rust examples are compiled and run as `examples/readme.rs`:
//! this test checks that every ```rust block of README.md stands there
//! verbatim (white space aside), so the README cannot drift from the API.

fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

fn rust_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rust") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "README.md has an unterminated ```rust block"
    );
    blocks
}

#[test]
fn every_readme_rust_block_is_compiled_by_the_readme_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        normalized(&std::fs::read_to_string(format!("{root}/examples/readme.rs")).unwrap());
    let blocks = rust_blocks(&readme);
    assert!(
        blocks.len() >= 4,
        "expected the README's Rust examples, found {}",
        blocks.len()
    );
    for block in blocks {
        let want = normalized(&block);
        let found = example.windows(want.len()).any(|w| w == want.as_slice());
        assert!(
            found,
            "this README block is not in examples/readme.rs (update both together):\n{block}"
        );
    }
}

#[test]
fn the_block_finder_sees_blocks_and_ignores_other_languages() {
    let md = "text\n```rust\nlet a = 1;\n```\n```sh\nls\n```\n  ```rust\n  b();\n  ```\n";
    assert_eq!(
        rust_blocks(md),
        vec!["let a = 1;\n".to_string(), "  b();\n".to_string()]
    );
    assert_eq!(normalized("  a   b \n\n c"), vec!["a b", "c"]);
}
