//! Admin API parsing against fixtures: pagination, nested fields, unknown fields, null workspace,
//! exact cents, and garbage that must give errors, never panics.

use proptest::prelude::*;
use shared_types::admin_api::*;
use shared_types::pool::Resolution;
use shared_types::{KeyHint, MicroUsd};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/admin_api/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn api_key_pages_follow_the_cursor_and_tolerate_unknowns() {
    let (page1, left_out) = parse_api_key_page(&fixture("api_keys_page1.json")).unwrap();
    assert_eq!(left_out, 0);
    assert_eq!(next_list_cursor(&page1).unwrap().as_deref(), Some("apikey_TEST02"));
    assert_eq!(page1.data[0].workspace_id, None);
    assert_eq!(page1.data[1].status, ApiKeyStatus::Inactive);
    assert_eq!(page1.data[1].expires_at.as_deref(), Some("2027-01-01T00:00:00Z"));
    let (page2, _) = parse_api_key_page(&fixture("api_keys_page2.json")).unwrap();
    assert_eq!(next_list_cursor(&page2).unwrap(), None);
    assert_eq!(page2.data[0].status, ApiKeyStatus::Other("suspended_for_review".into()));
    assert_eq!(page2.data[0].name, None);

    let all: Vec<ApiKeyObject> = page1.data.into_iter().chain(page2.data).collect();
    let resolve = |hint: &str| resolve_hint(&KeyHint::parse(hint).unwrap(), &all);
    assert_eq!(resolve("sk-ant-api03-TES...T001"), Resolution::Resolved { api_key_id: "apikey_TEST01".into(), workspace_id: None });
    assert_eq!(
        resolve("sk-ant-api03-TES…T002"),
        Resolution::Resolved { api_key_id: "apikey_TEST02".into(), workspace_id: Some("wrkspc_TEST01".into()) }
    );
    assert!(matches!(resolve("sk-ant-api03-TES...T003"), Resolution::Unresolved { why } if why.contains("2 Admin API keys")));
    assert!(matches!(resolve("sk-ant-api03-TES...T999"), Resolution::Unresolved { why } if why.contains("no Admin API key")));
}

#[test]
fn usage_pages_sum_per_key_bucket_and_model() {
    let pages = vec![parse_usage_page(&fixture("usage_page1.json")).unwrap(), parse_usage_page(&fixture("usage_page2.json")).unwrap()];
    assert_eq!(next_report_page(&pages[0]).unwrap().as_deref(), Some("page_TEST_2"));
    assert_eq!(next_report_page(&pages[1]).unwrap(), None);
    let first = &pages[0].data[0].results[0];
    let tokens = first.tokens();
    assert_eq!((tokens.cache_write_5m, tokens.cache_write_1h, tokens.cache_read, tokens.web_search_requests), (100, 50, 10, 2));

    let (by_key, skipped) = usage_by_key(&pages);
    assert_eq!(skipped, 1, "the Workbench row (null api_key_id) is skipped");
    let ten = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().to_utc();
    let models = &by_key[&("apikey_TEST01".to_string(), ten)];
    assert_eq!(models.len(), 3, "haiku standard and haiku batch are priced apart: {models:?}");
    let sonnet = models.iter().find(|m| m.model.starts_with("claude-sonnet")).unwrap();
    assert_eq!((sonnet.tokens.uncached_input, sonnet.tokens.output), (2000, 400), "rows of one bucket across pages add up");
    let batch = models.iter().find(|m| m.service_tier.as_deref() == Some("batch")).unwrap();
    assert_eq!((batch.model.as_str(), batch.tokens.uncached_input), ("claude-haiku-4-5-20251001", 3000));
    assert_eq!(by_key.len(), 2);
}

#[test]
fn cost_amounts_are_exact_cents() {
    let page = parse_cost_page(&fixture("cost_page.json")).unwrap();
    let rows = &page.data[0].results;
    assert_eq!(rows[0].amount, MicroUsd(1_234_500));
    assert_eq!(rows[1].amount, MicroUsd(1));
    let sums = cost_by_workspace(&[page.clone()]);
    let day = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc();
    assert_eq!(sums[&(None, day)], MicroUsd(1_334_500));
    assert_eq!(sums[&(Some("wrkspc_TEST01".into()), day)], MicroUsd(1));
}

#[test]
fn errors_are_classified_and_never_echo_keys() {
    let body = fixture("error_401.json");
    let parsed = parse_error_body(&body).unwrap();
    assert_eq!(parsed.kind, "authentication_error");
    assert!(!parsed.message.contains("TESTleaked"));
    assert!(matches!(classify(401, None, &body), Outcome::AuthFailed(m) if !m.contains("TESTleaked")));
    assert!(matches!(classify(403, None, b""), Outcome::AuthFailed(_)));
    assert_eq!(classify(429, Some("7"), b""), Outcome::RetryAfter(7));
    assert_eq!(classify(429, Some("soon"), b""), Outcome::RetryAfter(30));
    assert_eq!(classify(429, Some("99999"), b""), Outcome::RetryAfter(300));
    assert!(matches!(classify(500, None, b""), Outcome::Backoff(_)));
    assert!(matches!(classify(529, None, b"{}"), Outcome::Backoff(_)));
    assert_eq!(classify(404, None, b""), Outcome::NotFound);
    assert_eq!(classify(200, None, b""), Outcome::Success);
    assert!(backoff_secs(0, 0) >= 1 && backoff_secs(30, 999) <= 300);
    let leaky = format!("{}", parse_usage_page(b"{\"data\": \"sk-ant-api03-TESTleakedleakedleaked\"}").unwrap_err());
    assert!(!leaky.contains("TESTleaked"), "{leaky}");
}

#[test]
fn garbage_gives_errors() {
    let garbage: &[&[u8]] = &[
        b"",
        b"<html>502 Bad Gateway</html>",
        b"{\"data\": [",
        b"{\"data\": {}}",
        b"null",
        b"{\"data\": [{\"starting_at\": \"yesterday\", \"ending_at\": \"2026-11-24T11:00:00Z\", \"results\": []}]}",
        b"{\"data\": [{\"starting_at\": \"2026-11-24T10:00:00Z\", \"ending_at\": \"2026-11-24T11:00:00Z\", \"results\": [{\"output_tokens\": -5}]}]}",
    ];
    for bytes in garbage {
        assert!(parse_usage_page(bytes).is_err(), "{:?}", String::from_utf8_lossy(bytes));
        match parse_api_key_page(bytes) {
            Err(_) => {}
            Ok((page, left_out)) => assert!(page.data.is_empty() && left_out > 0, "{:?}", String::from_utf8_lossy(bytes)),
        }
    }
    // One key object the app cannot read (no status) is left out and counted; the page is kept.
    let odd = br#"{"data":[{"id":"apikey_TEST01","status":"active","expires_at":12345},{"id":"apikey_TEST02"}],"has_more":false}"#;
    let (page, left_out) = parse_api_key_page(odd).unwrap();
    assert_eq!((page.data.len(), left_out, page.data[0].expires_at.clone()), (1, 1, None));
    let amount_as_number = br#"{"data":[{"starting_at":"2026-11-23T00:00:00Z","ending_at":"2026-11-24T00:00:00Z","results":[{"currency":"USD","amount":123.45}]}],"has_more":false}"#;
    assert!(parse_cost_page(amount_as_number).is_err());
    let euros = br#"{"data":[{"starting_at":"2026-11-23T00:00:00Z","ending_at":"2026-11-24T00:00:00Z","results":[{"currency":"EUR","amount":"1"}]}],"has_more":false}"#;
    assert!(parse_cost_page(euros).is_err());
    let no_cursor = br#"{"data":[],"has_more":true}"#;
    assert!(next_report_page(&parse_usage_page(no_cursor).unwrap()).is_err());
    assert!(next_list_cursor(&parse_api_key_page(no_cursor).unwrap().0).is_err());
}

#[test]
fn urls_are_encoded_and_ids_checked() {
    let base = AdminApiBase::parse("http://127.0.0.1:9000/").unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().to_utc();
    let url = base.usage_report(t, t, Some("page/with space")).unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:9000/v1/organizations/usage_report/messages?"), "{url}");
    assert!(url.contains("group_by%5B%5D=api_key_id&group_by%5B%5D=model"), "{url}");
    assert!(url.contains("bucket_width=1h") && url.contains("page=page%2Fwith+space"), "{url}");
    assert!(base.update_api_key("apikey_TEST01").unwrap().path().ends_with("/api_keys/apikey_TEST01"));
    assert!(base.update_api_key("../../etc").is_err());
    assert!(base.list_api_keys(Some("a b"), 10).is_err());
    for bad in ["ftp://x", "not a url", "https://user:pw@example.com", "https://example.com/?q=1"] {
        assert!(AdminApiBase::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        serde_json::to_string(&UpdateApiKeyBody { name: None, status: Some("inactive".into()) }).unwrap(),
        r#"{"status":"inactive"}"#
    );
}

proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_usage_page(&bytes);
        let _ = parse_cost_page(&bytes);
        let _ = parse_api_key_page(&bytes);
        let _ = parse_api_key(&bytes);
        let _ = parse_workspace_page(&bytes);
        let _ = parse_error_body(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_json(s in "\\{\"data\":\\[\\{\"starting_at\":\"[0-9T:Z-]{0,25}\",\"results\":\\[\\{\"amount\":\"[0-9.-]{0,12}\",\"currency\":\"USD\",\"output_tokens\":[0-9-]{1,22}\\}\\]\\}\\],\"has_more\":(true|false)\\}") {
        let _ = parse_usage_page(s.as_bytes());
        let _ = parse_cost_page(s.as_bytes());
    }
}
