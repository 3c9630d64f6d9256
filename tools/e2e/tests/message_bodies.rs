//! What a node prints of the messages between the processes (bodies, at high verbosity) holds no
//! secret: devnode's trace prints every routed body. Its own test binary: the trace is switched on
//! through the environment. Requires `cargo xtask build`.

use e2e::*;
use serde_json::json;

#[test]
fn no_secret_travels_in_a_message_body() {
    std::env::set_var("DEVNODE_TRACE", "1");
    let env = Env::start("message-bodies", "truth.json", &["n0.os".to_string()]);
    env.configure_admin_api();
    let r = env.api(json!({"AddKey": {"secret": secret(1), "name": "k1", "node_cap": null}}));
    assert!(r.get("Ok").is_some(), "{r}");
    env.api(json!({"PollNow": null}));
    env.eventually("a poll", || env.api(json!({"Status": null}))["poller"]["polls_total"].as_u64().unwrap_or(0) >= 1);
    let traced = env.process_output();
    assert!(traced.contains("trace: request"), "the trace is on");
    assert!(traced.contains("SetAdminKey"), "the admin key was set while tracing");
    assert!(!traced.contains(ADMIN_KEY), "the admin key travelled in a message body");
    assert!(!traced.contains(&secret(1)), "an API key travelled in a message body");
}
