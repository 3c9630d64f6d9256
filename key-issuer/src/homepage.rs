//! The app's tile on the node's homepage: an icon, and a widget with the pool's state (active
//! keys, keys that can be issued, spend today, a warning when none can be issued).
//!
//! The widget is static HTML the homepage shows in a same-origin iframe; its script reads the
//! dashboard API (`Overview`, behind the node's login) and never sees a secret.

use base64::Engine;
use hyperware_process_lib::{homepage, our};

const ICON_SVG: &str = include_str!("homepage/icon.svg");
const WIDGET_HTML: &str = include_str!("homepage/widget.html");
pub const LABEL: &str = "API Key Manager";

/// The widget for this process: its API and app paths depend on the process id, which the build
/// identity chooses (`cargo xtask build --publisher ... --issuer-process ...`).
pub fn widget_for(process_id: &str) -> String {
    WIDGET_HTML.replace("__API_PATH__", &format!("/{process_id}/api")).replace("__APP_PATH__", &format!("/{process_id}/"))
}

/// Adds (or refreshes) the tile; the homepage forgets tiles at each boot, so this runs at every start.
/// The homepage's UI puts the icon in an `<img src>` as it is: it must be a data URL (bare base64
/// is fetched as a path and shows as a broken image, as seen on a real node).
pub fn add_tile() {
    let icon = format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(ICON_SVG));
    homepage::add_to_homepage(LABEL, Some(&icon), Some("/"), Some(&widget_for(&our().process.to_string())));
}
