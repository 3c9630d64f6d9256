//! echo: a benchmark-only process that answers every request someone waits for with one fixed
//! body, doing nothing else. `cargo xtask bench` runs it as the `--package` of its own devnode and
//! sends it p2p requests exactly as it sends them to the key-issuer (control API → kernel →
//! component → answer), so the difference between the two is the issuer's own work.
//!
//! The answer has the shape of a successful `RequestApiKey` answer (`{"Ok": "<text>"}`), so that
//! the benchmark checks both answers the same way; it carries no key.

use hyperware_process_lib::{await_message, call_init, Address, Message, Response};

wit_bindgen::generate!({
    path: "../../target/wit",
    world: "process-v1",
});

/// The one answer (fifty bytes shorter than an issued key's: nothing measurable at this scale).
const ANSWER: &[u8] = br#"{"Ok":"echo"}"#;

call_init!(init);

fn init(_our: Address) {
    loop {
        // Answers and send errors never come (echo sends nothing); requests nobody awaits need no answer.
        let Ok(Message::Request { expects_response: Some(_), .. }) = await_message() else { continue };
        let _ = Response::new().body(ANSWER).send();
    }
}
