//! The web client in a real browser: Debian's headless Chromium, driven
//! over WebDriver (chromedriver) with fantoccini, against a server started
//! by the test. `.ci/run` installs `chromium` and `chromium-driver`;
//! without them the tests say they are skipped (unless
//! `ACHAT_REQUIRE_BROWSER` is set, as CI sets it).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};

use crate::util::{Deadline, WAIT, start_web, test_config};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver on a free port; killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    port: u16,
    _profiles: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver, or `None` (the test is skipped) where the
    /// browser is not installed.
    async fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            assert!(
                std::env::var_os("ACHAT_REQUIRE_BROWSER").is_none(),
                "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: no {CHROMIUM} or {CHROMEDRIVER}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        // Ready when it takes connections.
        let deadline = Deadline::new("chromedriver to listen");
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            deadline.check();
            tokio::task::yield_now().await;
        }
        Some(Driver {
            _child: child,
            port,
            _profiles: tempfile::tempdir().unwrap(),
        })
    }

    /// A new headless browser window with a fresh profile.
    async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir().unwrap().keep();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,700",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = serde_json::json!({
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

/// Opens the page and logs in as `name` (not waiting for the answer).
async fn open_and_log_in(browser: &Browser, http: SocketAddr, name: &str) {
    browser.goto(&format!("http://{http}/")).await.unwrap();
    let field = browser.find(Locator::Id("name")).await.unwrap();
    field.send_keys(name).await.unwrap();
    browser
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits (bounded) until the element `id`'s text contains `needle`;
/// returns the text.
async fn wait_text(browser: &Browser, id: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = match browser.find(Locator::Id(id)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} never showed {needle:?}; it shows {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types a message and presses Enter (the recipients in `to`).
async fn say(browser: &Browser, to: &str, text: &str) {
    let to_field = browser.find(Locator::Id("to")).await.unwrap();
    to_field.clear().await.unwrap();
    to_field.send_keys(to).await.unwrap();
    let input = browser.find(Locator::Id("input")).await.unwrap();
    input.send_keys(&format!("{text}\u{e007}")).await.unwrap();
}

#[tokio::test]
async fn two_browser_users_and_an_nc_user_chat_and_html_shows_as_text() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let server = start_web(test_config());
    let http = server.http_addr.unwrap();
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    open_and_log_in(&alice, http, "alice").await;
    wait_text(&alice, "status", "online as alice").await;
    open_and_log_in(&bob, http, "bob").await;
    wait_text(&bob, "status", "online as bob").await;
    let mut carol = server.login("carol").await;

    say(&alice, "bob", "hello bob").await;
    wait_text(&bob, "messages", "hello bob").await;
    say(&bob, "alice, carol", "hello both").await;
    wait_text(&alice, "messages", "hello both").await;
    carol.expect("from bob: hello both").await;
    carol.send("alice, bob: from nc").await;
    wait_text(&alice, "messages", "from nc").await;
    wait_text(&bob, "messages", "from nc").await;
    say(&alice, "*", "to everyone").await;
    carol.expect("from alice: to everyone").await;
    wait_text(&bob, "messages", "to everyone").await;
    // The who list knows all three.
    let who = wait_text(&bob, "who", "carol").await;
    assert!(who.contains("alice") && who.contains("bob"), "{who}");

    // Markup in a message is text.
    carol.send("bob: <img src=x onerror=alert(1)>").await;
    wait_text(&bob, "messages", "<img src=x onerror=alert(1)>").await;
    let images = bob.find_all(Locator::Css("#messages img")).await.unwrap();
    assert!(images.is_empty(), "a message became an element");

    // A picture of the page mid-conversation (docs/web-client.png).
    let png = bob.screenshot().await.unwrap();
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/web-client.png"),
        png,
    )
    .unwrap();

    // A taken name is refused on the page.
    let mallory = driver.browser().await;
    open_and_log_in(&mallory, http, "alice").await;
    wait_text(&mallory, "login-error", "the name 'alice' is taken").await;

    for browser in [alice, bob, mallory] {
        browser.close().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_reconnects_after_the_server_restarts() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{port}");
    let server = crate::util::Binary::start(&["--http", &http]).await;
    let browser = driver.browser().await;
    open_and_log_in(&browser, http.parse().unwrap(), "alice").await;
    wait_text(&browser, "status", "online as alice").await;
    server.signal("TERM");
    wait_text(&browser, "messages", "server: shutting down").await;
    wait_text(&browser, "status", "connection lost, reconnecting").await;
    let _ = server.exit_status().await;
    let server = crate::util::Binary::start(&["--http", &http]).await;
    wait_text(&browser, "status", "online as alice").await;
    let mut bob = server.login("bob").await;
    bob.send("alice: welcome back").await;
    wait_text(&browser, "messages", "welcome back").await;
    browser.close().await.unwrap();
}
