#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

const M1: &str = "mem_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const M2: &str = "mem_01BX5ZZKBKACTAV9WEVGEMMVRZ";
const M3: &str = "mem_01H0000000000000000000000A";
const E1: &str = "epi_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const E2: &str = "epi_01BX5ZZKBKACTAV9WEVGEMMVRZ";

fn mem(id: &str, claim: &str, confidence: f64, authority: &str) -> MemorySource {
    MemorySource {
        id: MemoryId::parse(id).unwrap(),
        claim: claim.to_owned(),
        source_episodes_json: json!([]),
        source_events_json: json!([]),
        domains_json: json!([]),
        confidence,
        authority: authority.to_owned(),
    }
}

fn epi(id: &str, summary: &str, confidence: f64) -> EpisodeSource {
    EpisodeSource {
        id: EpisodeId::parse(id).unwrap(),
        summary: summary.to_owned(),
        source_events_json: json!([]),
        domains_json: json!([]),
        confidence,
    }
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

// ---- constants -------------------------------------------------------------------------

#[test]
fn constants_match_spec() {
    assert_eq!(DECAY_SUMMARY_MAX_CLAIM_BYTES, 4096);
    assert_eq!(DECAY_SUMMARY_CLAIM_SEPARATOR, " | ");
    assert_eq!(DECAY_SUMMARY_CLAIM_SEPARATOR.len(), 3);
    assert_eq!(DECAY_SUMMARY_TRUNCATION_SUFFIX, "... [truncated]");
    assert_eq!(DECAY_SUMMARY_TRUNCATION_SUFFIX.len(), 15);
}

// ---- §5.2 claim text ---------------------------------------------------------------------

#[test]
fn join_uses_separator_in_list_order() {
    assert_eq!(
        join_claims(&["alpha", "beta", "gamma"]),
        "alpha | beta | gamma"
    );
    assert_eq!(join_claims(&["only"]), "only");
    assert_eq!(join_claims::<&str>(&[]), "");
}

#[test]
fn join_accepts_owned_strings() {
    let texts = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(join_claims(&texts), "a | b");
}

#[test]
fn two_empty_claims_give_bare_separator() {
    assert_eq!(join_claims(&["", ""]), " | ");
    assert_eq!(join_claims(&["", "", ""]), " |  | ");
    assert_eq!(join_claims(&["a", ""]), "a | ");
    assert_eq!(join_claims(&[""]), "");
}

#[test]
fn duplicates_are_repeated() {
    assert_eq!(join_claims(&["x", "x", "y", "x"]), "x | x | y | x");
}

#[test]
fn no_trimming_or_normalisation() {
    assert_eq!(
        join_claims(&["  lead", "trail  ", "\tmixed\n", "Cafe\u{301}"]),
        "  lead | trail   | \tmixed\n | Cafe\u{301}"
    );
}

#[test]
fn exactly_4096_bytes_is_not_truncated() {
    let single = "a".repeat(4096);
    assert_eq!(join_claims(&[single.as_str()]), single);
    assert_eq!(truncate_claim(single.clone()), single);

    // 2046 + 3 + 2047 = 4096 including the separator.
    let a = "a".repeat(2046);
    let b = "b".repeat(2047);
    let joined = join_claims(&[a.as_str(), b.as_str()]);
    assert_eq!(joined.len(), 4096);
    assert_eq!(joined, format!("{a} | {b}"));
}

#[test]
fn ascii_4097_bytes_truncates_to_exactly_4096() {
    let long = "a".repeat(4097);
    let out = join_claims(&[long.as_str()]);
    assert_eq!(out.len(), 4096);
    assert_eq!(&out[..4081], &long[..4081]);
    assert!(out.ends_with(DECAY_SUMMARY_TRUNCATION_SUFFIX));
    assert_eq!(out, format!("{}... [truncated]", "a".repeat(4081)));
}

#[test]
fn separator_counts_towards_the_limit() {
    // 2047 + 3 + 2047 = 4097: one byte over because of the separator.
    let a = "a".repeat(2047);
    let b = "b".repeat(2047);
    let out = join_claims(&[a.as_str(), b.as_str()]);
    assert_eq!(out.len(), 4096);
    let expected_head = format!("{a} | {b}");
    assert_eq!(&out[..4081], &expected_head[..4081]);
    assert!(out.ends_with(DECAY_SUMMARY_TRUNCATION_SUFFIX));
}

#[test]
fn truncation_may_cut_inside_the_separator() {
    // Claim one ends at byte 4080, so the cut at 4081 keeps only the separator's space.
    let a = "a".repeat(4080);
    let tail = "t".repeat(100);
    let out = join_claims(&[a.as_str(), tail.as_str()]);
    assert_eq!(out, format!("{a} ... [truncated]"));
    assert_eq!(out.len(), 4096);
}

#[test]
fn two_byte_chars_straddling_4081_give_4095() {
    // 'é' is 2 bytes, so characters start at even offsets and byte 4081 is mid-character.
    let text = "é".repeat(2100);
    assert!(text.len() > 4096);
    assert!(!text.is_char_boundary(4081));
    let out = join_claims(&[text.as_str()]);
    assert_eq!(out.len(), 4095);
    assert_eq!(out, format!("{}... [truncated]", "é".repeat(2040)));
}

#[test]
fn two_byte_chars_on_boundary_give_4096() {
    // Shift by one ASCII byte so a character starts exactly at 4081.
    let text = format!("a{}", "é".repeat(2100));
    assert!(text.is_char_boundary(4081));
    let out = truncate_claim(text.clone());
    assert_eq!(out.len(), 4096);
    assert_eq!(&out[..4081], &text[..4081]);
}

#[test]
fn wider_chars_back_off_to_a_boundary() {
    // 3-byte chars start at multiples of 3; 4081 = 3*1360 + 1, so the cut backs off 1.
    let cjk = "中".repeat(1400);
    let out = truncate_claim(cjk);
    assert_eq!(out.len(), 4080 + 15);
    assert_eq!(out, format!("{}... [truncated]", "中".repeat(1360)));

    // 4-byte chars start at multiples of 4; 4081 = 4*1020 + 1, so the cut backs off 1.
    let emoji = "🦀".repeat(1100);
    let out = truncate_claim(emoji);
    assert_eq!(out.len(), 4080 + 15);
    assert!(out.starts_with("🦀"));

    // 4-byte chars offset by 2: 4081 - 2 = 4079 = 4*1019 + 3, so the cut backs off 3.
    let shifted = format!("ab{}", "🦀".repeat(1100));
    let out = truncate_claim(shifted);
    assert_eq!(out.len(), 4078 + 15);
    assert!(out.len() <= DECAY_SUMMARY_MAX_CLAIM_BYTES);
}

#[test]
fn truncate_claim_leaves_short_text_alone() {
    assert_eq!(truncate_claim(String::new()), "");
    assert_eq!(truncate_claim("short".to_owned()), "short");
    // Text that merely looks truncated is not touched again.
    let looks = format!("x{DECAY_SUMMARY_TRUNCATION_SUFFIX}");
    assert_eq!(truncate_claim(looks.clone()), looks);
}

#[test]
fn very_long_input_is_capped() {
    let parts: Vec<String> = (0..1000).map(|i| format!("claim number {i}")).collect();
    let out = join_claims(&parts);
    assert_eq!(out.len(), 4096);
    assert!(out.starts_with("claim number 0 | claim number 1 | "));
    assert!(out.ends_with(DECAY_SUMMARY_TRUNCATION_SUFFIX));
}

// ---- §5.3 confidence ---------------------------------------------------------------------

#[test]
fn confidence_is_the_minimum() {
    assert!(approx(min_confidence([0.9, 0.3, 0.7]), 0.3));
    assert!(approx(min_confidence([0.5]), 0.5));
    assert!(approx(min_confidence([1.0, 1.0]), 1.0));
    assert!(approx(min_confidence([0.0, 0.8]), 0.0));
    // Double precision is kept.
    assert!(approx(
        min_confidence([0.123_456_789_012, 0.9]),
        0.123_456_789_012
    ));
}

#[test]
fn confidence_is_clamped_to_unit_range() {
    assert!(approx(min_confidence([1.5, 2.0]), 1.0));
    assert!(approx(min_confidence([-0.25, 0.5]), 0.0));
    assert!(approx(min_confidence([f64::INFINITY]), 1.0));
    assert!(approx(min_confidence([f64::NEG_INFINITY, 0.5]), 0.0));
    assert!(approx(min_confidence([1.0 + 1e-12]), 1.0));
}

#[test]
fn nan_never_wins_the_minimum() {
    assert!(approx(min_confidence([f64::NAN, 0.4, 0.6]), 0.4));
    assert!(approx(min_confidence([0.4, f64::NAN]), 0.4));
    let all_nan = min_confidence([f64::NAN, f64::NAN]);
    assert!(!all_nan.is_nan());
    assert!(approx(all_nan, 0.0));
}

#[test]
fn empty_confidence_is_zero() {
    assert_eq!(min_confidence(std::iter::empty()), 0.0);
}

#[test]
fn negative_zero_is_normalised() {
    let out = min_confidence([-0.0, 0.5]);
    assert_eq!(out, 0.0);
    assert!(out.is_sign_positive());
    assert!(min_confidence([-3.0]).is_sign_positive());
}

// ---- §5.3 authority ----------------------------------------------------------------------

#[test]
fn authority_spec_examples() {
    assert_eq!(
        lowest_authority(["user", "agent", "candidate"]),
        "candidate"
    );
    assert_eq!(lowest_authority(["tool", "derived"]), "derived");
    assert_eq!(lowest_authority(["derived", "tool"]), "tool");
    assert_eq!(lowest_authority(["candidate", "Candidate"]), "Candidate");
}

#[test]
fn authority_classification_is_exact_match() {
    use AuthorityTier::*;
    for (label, tier) in [
        ("user", User),
        ("User", User),
        ("agent", Agent),
        ("Agent", Agent),
        ("candidate", Candidate),
        ("Candidate", Candidate),
        ("derived", Derived),
        ("tool", Derived),
        ("USER", Derived),
        ("AGENT", Derived),
        ("", Derived),
        (" user", Derived),
        ("uSer", Derived),
    ] {
        assert_eq!(AuthorityTier::classify(label), tier, "label {label:?}");
    }
    assert!(Derived < Candidate && Candidate < Agent && Agent < User);
}

#[test]
fn authority_keeps_last_lowest_label_verbatim() {
    assert_eq!(lowest_authority(["user"]), "user");
    assert_eq!(lowest_authority(["User"]), "User");
    assert_eq!(lowest_authority(["user", "User"]), "User");
    assert_eq!(lowest_authority(["User", "user"]), "user");
    assert_eq!(lowest_authority(["agent", "user"]), "agent");
    assert_eq!(lowest_authority(["Agent", "user", "agent"]), "agent");
    assert_eq!(
        lowest_authority(["candidate", "agent", "user"]),
        "candidate"
    );
    // Unknown labels rank lowest and are copied as written.
    assert_eq!(lowest_authority(["user", "USER"]), "USER");
    assert_eq!(lowest_authority(["", "agent"]), "");
    assert_eq!(lowest_authority(["tool", "candidate", "Tool"]), "Tool");
    // A higher tier after the lowest does not displace it.
    assert_eq!(lowest_authority(["derived", "user", "agent"]), "derived");
}

#[test]
fn empty_authority_is_user() {
    assert_eq!(lowest_authority(std::iter::empty::<&str>()), "user");
}

// ---- §5.3 union --------------------------------------------------------------------------

#[test]
fn union_keeps_first_seen_order_and_dedups() {
    let a = json!(["x", "y"]);
    let b = json!(["z", "x", "w", "y"]);
    assert_eq!(union_json_arrays([&a, &b]), json!(["x", "y", "z", "w"]));
    // Duplicates within one source collapse too.
    let c = json!(["q", "q", "p", "q"]);
    assert_eq!(union_json_arrays([&c]), json!(["q", "p"]));
}

#[test]
fn union_treats_bare_string_as_one_element_array() {
    let a = json!("solo");
    let b = json!(["solo", "other"]);
    let c = json!("other");
    assert_eq!(union_json_arrays([&a, &b, &c]), json!(["solo", "other"]));
    let empty = json!("");
    assert_eq!(union_json_arrays([&empty]), json!([""]));
}

#[test]
fn union_ignores_other_non_arrays() {
    let values = [
        json!(null),
        json!(42),
        json!(1.5),
        json!(true),
        json!(false),
        json!({"a": ["x"]}),
        json!({}),
    ];
    assert_eq!(union_json_arrays(values.iter()), json!([]));
    let mixed = [
        json!(null),
        json!(["x"]),
        json!(7),
        json!({"k": 1}),
        json!("y"),
    ];
    assert_eq!(union_json_arrays(mixed.iter()), json!(["x", "y"]));
}

#[test]
fn union_of_nothing_is_empty_array() {
    assert_eq!(union_json_arrays(std::iter::empty()), json!([]));
    let empties = [json!([]), json!([])];
    assert_eq!(union_json_arrays(empties.iter()), json!([]));
}

#[test]
fn union_keeps_and_dedups_non_string_elements() {
    let a = json!([1, "1", 2, null, true, [1, 2], {"k": "v"}]);
    let b = json!([2, 1, null, false, true, [1, 2], [2, 1], {"k": "v"}, {"k": "w"}]);
    assert_eq!(
        union_json_arrays([&a, &b]),
        json!([1, "1", 2, null, true, [1, 2], {"k": "v"}, false, [2, 1], {"k": "w"}])
    );
}

#[test]
fn union_compares_objects_regardless_of_key_order() {
    // Parse from text so the key order really differs on input.
    let a: Value = serde_json::from_str(r#"[{"a":1,"b":{"c":2,"d":3}}]"#).unwrap();
    let b: Value = serde_json::from_str(r#"[{"b":{"d":3,"c":2},"a":1}, "x"]"#).unwrap();
    let out = union_json_arrays([&a, &b]);
    assert_eq!(out.as_array().unwrap().len(), 2);
    assert_eq!(out, json!([{"a": 1, "b": {"c": 2, "d": 3}}, "x"]));
}

#[test]
fn serde_json_map_equality_ignores_key_order() {
    let x: Value = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
    let y: Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
    assert_eq!(x, y);
    let z: Value = serde_json::from_str(r#"{"a":1,"b":3}"#).unwrap();
    assert_ne!(x, z);
}

#[test]
fn union_number_equality_is_serde_json_equality() {
    // Same textual number deduplicates; integer 1 and float 1.0 are distinct JSON values
    // under serde_json equality, so both are kept.
    let a: Value = serde_json::from_str("[1, 1.0, 1, 1.0, 0]").unwrap();
    assert_eq!(
        union_json_arrays([&a]),
        serde_json::from_str::<Value>("[1, 1.0, 0]").unwrap()
    );
}

#[test]
fn union_nested_array_elements_are_opaque() {
    // A nested array is one element; it is not flattened.
    let a = json!([["x", "y"]]);
    let b = json!(["x"]);
    assert_eq!(union_json_arrays([&a, &b]), json!([["x", "y"], "x"]));
}

// ---- §5.4 memory summaries ---------------------------------------------------------------

#[test]
fn memory_summary_full_row() {
    let mut a = mem(M1, "first claim", 0.9, "user");
    a.source_episodes_json = json!(["epi_A", "epi_B"]);
    a.source_events_json = json!(["evt_1"]);
    a.domains_json = json!(["rust", "db"]);
    let mut b = mem(M2, "second claim", 0.4, "agent");
    b.source_episodes_json = json!("epi_C");
    b.source_events_json = json!(["evt_2", "evt_1"]);
    b.domains_json = json!(["db", "ops"]);
    let mut c = mem(M3, "third", 0.6, "Agent");
    c.source_episodes_json = json!(["epi_B"]);
    c.source_events_json = json!(null);
    c.domains_json = json!({"not": "an array"});

    let draft = summarize_memories(&[a, b, c]);
    assert_eq!(draft.claim, "first claim | second claim | third");
    assert_eq!(
        draft.source_episodes_json,
        json!(["epi_A", "epi_B", "epi_C"])
    );
    assert_eq!(draft.source_events_json, json!(["evt_1", "evt_2"]));
    assert_eq!(draft.domains_json, json!(["rust", "db", "ops"]));
    assert!(approx(draft.confidence, 0.4));
    assert_eq!(draft.authority, "Agent");
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_memories": [M1, M2, M3]})
    );
}

#[test]
fn memory_duplicates_contribute_twice() {
    let a = mem(M1, "same", 0.7, "user");
    let b = mem(M2, "other", 0.8, "agent");
    let draft = summarize_memories(&[a.clone(), b, a]);
    assert_eq!(draft.claim, "same | other | same");
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_memories": [M1, M2, M1]})
    );
    // `agent` is the lowest tier present, so the repeated `user` source does not win.
    assert_eq!(draft.authority, "agent");
    assert!(approx(draft.confidence, 0.7));
}

#[test]
fn memory_lineage_fallback_uses_memory_ids() {
    let a = mem(M1, "a", 0.5, "user");
    let b = mem(M2, "b", 0.5, "user");
    let draft = summarize_memories(&[a.clone(), b, a]);
    // Both unions empty → the memory ids, in list order, duplicates kept.
    assert_eq!(draft.source_episodes_json, json!([M1, M2, M1]));
    assert_eq!(draft.source_events_json, json!([]));
}

#[test]
fn memory_lineage_fallback_when_fields_are_not_arrays() {
    let mut a = mem(M1, "a", 0.5, "user");
    a.source_episodes_json = json!(null);
    a.source_events_json = json!({"k": "v"});
    let mut b = mem(M2, "b", 0.5, "user");
    b.source_episodes_json = json!(3);
    b.source_events_json = json!(false);
    let draft = summarize_memories(&[a, b]);
    assert_eq!(draft.source_episodes_json, json!([M1, M2]));
    assert_eq!(draft.source_events_json, json!([]));
}

#[test]
fn memory_no_fallback_when_events_present() {
    let mut a = mem(M1, "a", 0.5, "user");
    a.source_events_json = json!(["evt_1"]);
    let b = mem(M2, "b", 0.5, "user");
    let draft = summarize_memories(&[a, b]);
    assert_eq!(draft.source_episodes_json, json!([]));
    assert_eq!(draft.source_events_json, json!(["evt_1"]));
}

#[test]
fn memory_no_fallback_when_episodes_present() {
    let a = mem(M1, "a", 0.5, "user");
    let mut b = mem(M2, "b", 0.5, "user");
    b.source_episodes_json = json!("epi_X");
    let draft = summarize_memories(&[a, b]);
    assert_eq!(draft.source_episodes_json, json!(["epi_X"]));
    assert_eq!(draft.source_events_json, json!([]));
}

#[test]
fn memory_summary_truncates_long_claims() {
    let long = "z".repeat(5000);
    let draft = summarize_memories(&[mem(M1, &long, 0.5, "user")]);
    assert_eq!(draft.claim.len(), 4096);
    assert!(draft.claim.ends_with(DECAY_SUMMARY_TRUNCATION_SUFFIX));
}

#[test]
fn memory_summary_confidence_is_clamped() {
    let draft = summarize_memories(&[mem(M1, "a", 1.7, "user"), mem(M2, "b", 1.2, "user")]);
    assert!(approx(draft.confidence, 1.0));
    let draft = summarize_memories(&[mem(M1, "a", -0.1, "user")]);
    assert!(approx(draft.confidence, 0.0));
}

#[test]
fn memory_summary_is_deterministic() {
    let mut a = mem(M1, "a", 0.3, "candidate");
    a.domains_json = json!(["d1", {"z": 1, "a": 2}]);
    a.source_events_json = json!(["evt_9", 5]);
    let mut b = mem(M2, "b", 0.2, "tool");
    b.domains_json = json!(["d2", "d1"]);
    let sources = [a, b];
    let first = summarize_memories(&sources);
    let second = summarize_memories(&sources);
    assert_eq!(first, second);
    for (x, y) in [
        (&first.source_episodes_json, &second.source_episodes_json),
        (&first.source_events_json, &second.source_events_json),
        (&first.domains_json, &second.domains_json),
        (&first.applies_when_json, &second.applies_when_json),
    ] {
        assert_eq!(x.to_string(), y.to_string());
    }
    assert_eq!(first.confidence.to_bits(), second.confidence.to_bits());
    assert_eq!(first.authority, "tool");
}

#[test]
fn empty_memory_list_does_not_panic() {
    let draft = summarize_memories(&[]);
    assert_eq!(draft.claim, "");
    assert_eq!(draft.confidence, 0.0);
    assert_eq!(draft.authority, "user");
    assert_eq!(draft.source_episodes_json, json!([]));
    assert_eq!(draft.applies_when_json, json!({"summary_of_memories": []}));
}

// ---- §5.4 episode summaries --------------------------------------------------------------

#[test]
fn episode_summary_full_row() {
    let mut a = epi(E1, "ep one", 0.8);
    a.source_events_json = json!(["evt_1", "evt_2"]);
    a.domains_json = json!("rust");
    let mut b = epi(E2, "ep two", 0.55);
    b.source_events_json = json!(["evt_2", "evt_3"]);
    b.domains_json = json!(["rust", "ops"]);
    let draft = summarize_episodes(&[a, b]);
    assert_eq!(draft.claim, "ep one | ep two");
    assert_eq!(draft.source_episodes_json, json!([E1, E2]));
    assert_eq!(draft.source_events_json, json!(["evt_1", "evt_2", "evt_3"]));
    assert_eq!(draft.domains_json, json!(["rust", "ops"]));
    assert!(approx(draft.confidence, 0.55));
    assert_eq!(draft.authority, "derived");
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_episodes": [E1, E2]})
    );
}

#[test]
fn episode_ids_keep_duplicates_without_union() {
    let a = epi(E1, "x", 0.9);
    let b = epi(E2, "y", 0.9);
    let draft = summarize_episodes(&[a.clone(), b, a]);
    assert_eq!(draft.claim, "x | y | x");
    assert_eq!(draft.source_episodes_json, json!([E1, E2, E1]));
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_episodes": [E1, E2, E1]})
    );
    // Episodes without events get no fallback: the episode ids already are lineage.
    assert_eq!(draft.source_events_json, json!([]));
}

#[test]
fn episode_authority_is_always_derived() {
    let draft = summarize_episodes(&[epi(E1, "", 1.0)]);
    assert_eq!(draft.authority, EPISODE_SUMMARY_AUTHORITY);
    assert_eq!(draft.authority, "derived");
}

#[test]
fn episode_empty_summaries_and_clamping() {
    let draft = summarize_episodes(&[epi(E1, "", 1.3), epi(E2, "", 2.0)]);
    assert_eq!(draft.claim, " | ");
    assert!(approx(draft.confidence, 1.0));
    let draft = summarize_episodes(&[epi(E1, "a", f64::NAN), epi(E2, "b", 0.25)]);
    assert!(approx(draft.confidence, 0.25));
}

#[test]
fn episode_non_array_fields_contribute_nothing() {
    let mut a = epi(E1, "a", 0.5);
    a.source_events_json = json!(null);
    a.domains_json = json!(12);
    let mut b = epi(E2, "b", 0.5);
    b.source_events_json = json!({"evt": 1});
    b.domains_json = json!(true);
    let draft = summarize_episodes(&[a, b]);
    assert_eq!(draft.source_events_json, json!([]));
    assert_eq!(draft.domains_json, json!([]));
}

#[test]
fn episode_summary_truncates_long_summaries() {
    let long = "é".repeat(2100);
    let draft = summarize_episodes(&[epi(E1, &long, 0.5)]);
    assert_eq!(draft.claim.len(), 4095);
}

// ---- §7.7 LLM summaries ------------------------------------------------------------------

#[test]
fn llm_memory_summary_adds_model_and_keeps_claim_verbatim() {
    let mut a = mem(M1, "a", 0.9, "user");
    a.source_events_json = json!(["evt_1"]);
    let b = mem(M2, "b", 0.3, "candidate");
    let sources = [a, b];
    let claim = "  An LLM summary, untrimmed.\n".to_owned();
    let draft = llm_summary_of_memories(&sources, claim.clone(), "claude-sonnet-4-7@1");
    assert_eq!(draft.claim, claim);
    assert_eq!(
        draft.applies_when_json,
        json!({
            "summary_of_memories": [M1, M2],
            "llm_summary": {"model_name": "claude-sonnet-4-7@1"}
        })
    );
    // Everything but claim and applies_when matches the deterministic path.
    let det = summarize_memories(&sources);
    assert_eq!(draft.source_episodes_json, det.source_episodes_json);
    assert_eq!(draft.source_events_json, det.source_events_json);
    assert_eq!(draft.domains_json, det.domains_json);
    assert_eq!(draft.confidence.to_bits(), det.confidence.to_bits());
    assert_eq!(draft.authority, "candidate");
}

#[test]
fn llm_memory_summary_uses_lineage_fallback() {
    let sources = [mem(M1, "a", 0.5, "user"), mem(M1, "a", 0.5, "user")];
    let draft = llm_summary_of_memories(&sources, "s".to_owned(), "m@1");
    assert_eq!(draft.source_episodes_json, json!([M1, M1]));
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_memories": [M1, M1], "llm_summary": {"model_name": "m@1"}})
    );
}

#[test]
fn llm_claim_is_never_truncated_here() {
    let claim = "y".repeat(5000);
    let draft = llm_summary_of_memories(&[mem(M1, "a", 0.5, "user")], claim.clone(), "m");
    assert_eq!(draft.claim, claim);
}

#[test]
fn llm_episode_summary_adds_model() {
    let mut a = epi(E1, "a", 0.7);
    a.domains_json = json!(["d"]);
    let sources = [a.clone(), epi(E2, "b", 0.6), a];
    let draft = llm_summary_of_episodes(&sources, "claim".to_owned(), "m@1");
    assert_eq!(draft.claim, "claim");
    assert_eq!(draft.source_episodes_json, json!([E1, E2, E1]));
    assert_eq!(draft.domains_json, json!(["d"]));
    assert_eq!(draft.authority, "derived");
    assert!(approx(draft.confidence, 0.6));
    assert_eq!(
        draft.applies_when_json,
        json!({"summary_of_episodes": [E1, E2, E1], "llm_summary": {"model_name": "m@1"}})
    );
}

#[test]
fn deterministic_drafts_have_no_llm_marker() {
    let m = summarize_memories(&[mem(M1, "a", 0.5, "user")]);
    assert!(m.applies_when_json.get(APPLIES_WHEN_LLM_SUMMARY).is_none());
    let e = summarize_episodes(&[epi(E1, "a", 0.5)]);
    assert!(e.applies_when_json.get(APPLIES_WHEN_LLM_SUMMARY).is_none());
    assert_eq!(m.applies_when_json.as_object().unwrap().len(), 1);
}
