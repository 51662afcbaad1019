//! gRPC through the L7 proxy (HTTP/2 both sides): a real gRPC client and server (Debian's
//! python3-grpcio, `support/grpc_peer.py`), the `h2` crate's client where the test must see
//! frames (trailers-only answers), and the h2c origin as a failing host.
//!
//! The first test runs the Python client against the Python server without the daemon.
//!
//! Metric labels: `grpc_status` is the numeric code as text ("0", "4", "12", "14").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use h2::Reason;
use mosn_tests::grpc::{GrpcServer, SERVICE, code, field, grpc_call, grpc_client};
use mosn_tests::h2::{
    Behavior, H2Client, H2Origin, H2Reply, grpc_headers, grpc_messages, grpc_unary, protocols,
};
use mosn_tests::http::{HttpSetup, cluster, merge};
use mosn_tests::upstream::dead_addr;
use mosn_tests::{LISTENER, Mosn, within};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// Routes by gRPC service: `/mosn.test.Peer/` to cluster `c1`, plus `extra` routes first.
fn grpc_setup(extra_routes: &[Value], clusters: Value) -> HttpSetup {
    let mut routes: Vec<Value> = extra_routes.to_vec();
    routes.push(
        json!({ "match": { "prefix": format!("/{SERVICE}/") }, "route": { "cluster_name": "c1" } }),
    );
    protocols(
        HttpSetup::new(Value::Array(routes), clusters),
        "Http2",
        "Http2",
    )
}

async fn simple(server: SocketAddr) -> Mosn {
    grpc_setup(&[], json!([cluster("c1", &[server])]))
        .start()
        .await
}

/// `mosn_grpc_requests_total` for one service, method and status.
async fn grpc_count(m: &Mosn, service: &str, method: &str, status: &str) -> u64 {
    m.metrics()
        .await
        .get(
            "mosn_grpc_requests_total",
            &[
                ("listener", LISTENER),
                ("service", service),
                ("method", method),
                ("grpc_status", status),
            ],
        )
        .map_or(0, |v| v as u64)
}

fn assert_trailers_only(r: &H2Reply, status: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: gRPC errors are HTTP 200: {r:?}");
    assert!(r.trailers_only, "{what}: a trailers-only response: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc")),
        "{what}: {r:?}"
    );
    assert_eq!(r.grpc_status(), Some(status), "{what}: {r:?}");
}

#[tokio::test]
async fn grpc_peer_works_directly() {
    let s = GrpcServer::start().await;
    let r = grpc_call(s.addr, "unary", &["--size", "100000"]).await;
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(field(&r, "sha256"), field(&r, "received_sha256"));
    let r = grpc_call(
        s.addr,
        "client-stream",
        &["--size", "3000000", "--chunk", "65536"],
    )
    .await;
    assert_eq!(
        (code(&r), field(&r, "server_sha256")),
        ("OK", field(&r, "sha256")),
        "{r}"
    );
    let r = grpc_call(
        s.addr,
        "server-stream",
        &["--size", "3000000", "--chunk", "65536"],
    )
    .await;
    assert_eq!(
        (code(&r), field(&r, "received_sha256")),
        ("OK", field(&r, "sha256")),
        "{r}"
    );
    assert_eq!(r["trailing"]["x-sha256"], r["sha256"]);
    let r = grpc_call(s.addr, "bidi", &["--count", "20", "--chunk", "1000"]).await;
    assert_eq!(
        (code(&r), r["in_order"].as_bool()),
        ("OK", Some(true)),
        "{r}"
    );
    let r = grpc_call(
        s.addr,
        "error",
        &["--code", "NOT_FOUND", "--message", "nope"],
    )
    .await;
    assert_eq!((code(&r), field(&r, "details")), ("NOT_FOUND", "nope"));
    let r = grpc_call(s.addr, "slow", &["--delay-ms", "3000", "--timeout", "0.5"]).await;
    assert_eq!(code(&r), "DEADLINE_EXCEEDED");
    let r = grpc_call(s.addr, "hold", &["--cancel-after", "0.3"]).await;
    assert_eq!(code(&r), "CANCELLED");
    s.wait_event(&format!("CANCELLED /{SERVICE}/Hold"), LIMIT)
        .await;
    // By hand over h2: a unary call and a trailers-only error.
    let c = H2Client::connect(s.addr).await;
    let r = grpc_unary(&c, &format!("/{SERVICE}/Unary"), b"hi", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.grpc_status()), (200, Some("0")), "{r:?}");
    assert_eq!(grpc_messages(&r.body), vec![b"hi".to_vec()]);
    let r = grpc_unary(
        &c,
        &format!("/{SERVICE}/Error"),
        b"PERMISSION_DENIED:no way",
        &[],
    )
    .await
    .unwrap();
    assert_trailers_only(&r, "7", "an aborted call");
    assert_eq!(r.header("grpc-message"), Some("no way"));
}

#[tokio::test]
async fn four_call_types_through_mosn() {
    let s = GrpcServer::start().await;
    let m = simple(s.addr).await;
    let t = m.listen;
    let r = grpc_call(t, "unary", &["--size", "1048576"]).await;
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(
        (field(&r, "received_sha256"), r["received"].as_u64()),
        (field(&r, "sha256"), Some(1 << 20))
    );
    let r = grpc_call(
        t,
        "client-stream",
        &["--size", "8388608", "--chunk", "65536"],
    )
    .await;
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(
        field(&r, "server_sha256"),
        field(&r, "sha256"),
        "the server got 8 MiB intact"
    );
    assert_eq!(
        r["trailing"]["x-total-bytes"], "8388608",
        "trailing metadata passes"
    );
    let r = grpc_call(
        t,
        "server-stream",
        &["--size", "8388608", "--chunk", "65536"],
    )
    .await;
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(
        (field(&r, "received_sha256"), r["messages"].as_u64()),
        (field(&r, "sha256"), Some(128))
    );
    assert_eq!(r["trailing"]["x-sha256"], r["sha256"]);
    let r = grpc_call(t, "bidi", &["--count", "50", "--chunk", "4096"]).await;
    assert_eq!(code(&r), "OK", "{r}");
    assert_eq!(
        (r["messages"].as_u64(), r["in_order"].as_bool()),
        (Some(50), Some(true))
    );
    assert_eq!(field(&r, "received_sha256"), field(&r, "sha256"));

    for method in ["Unary", "ClientStream", "ServerStream", "Bidi"] {
        assert_eq!(
            s.calls(&format!("/{SERVICE}/{method}")),
            1,
            "{method} reached the server once"
        );
        assert_eq!(
            grpc_count(&m, SERVICE, method, "0").await,
            1,
            "{method}: one OK counted"
        );
        let hist = m.metrics().await.value(
            "mosn_grpc_request_duration_seconds_count",
            &[
                ("listener", LISTENER),
                ("service", SERVICE),
                ("method", method),
            ],
        );
        assert_eq!(hist, 1, "{method}: one duration observed");
    }
    let l = [("listener", LISTENER)];
    let metrics = m.metrics().await;
    assert_eq!(metrics.value("mosn_listener_downstream_rq_total", &l), 4);
    assert_eq!(
        metrics.value("mosn_listener_downstream_rq_2xx_total", &l),
        4
    );
}

#[tokio::test]
async fn error_status_passes_through_trailers_only() {
    let s = GrpcServer::start().await;
    let m = simple(s.addr).await;
    let r = grpc_call(
        m.listen,
        "error",
        &["--code", "NOT_FOUND", "--message", "nope"],
    )
    .await;
    assert_eq!(
        (code(&r), field(&r, "details")),
        ("NOT_FOUND", "nope"),
        "{r}"
    );
    let c = H2Client::connect(m.listen).await;
    let r = within(
        LIMIT,
        "an aborted call by hand",
        grpc_unary(
            &c,
            &format!("/{SERVICE}/Error"),
            b"PERMISSION_DENIED:no way",
            &[],
        ),
    )
    .await
    .unwrap();
    assert_trailers_only(&r, "7", "the server's own trailers-only answer");
    assert_eq!(r.header("grpc-message"), Some("no way"));
    assert_eq!(grpc_count(&m, SERVICE, "Error", "5").await, 1);
    assert_eq!(grpc_count(&m, SERVICE, "Error", "7").await, 1);
    assert_eq!(grpc_count(&m, SERVICE, "Error", "0").await, 0);
}

#[tokio::test]
async fn deadlines_bound_the_call() {
    let s = GrpcServer::start().await;
    let timed = json!({ "match": { "prefix": "/timed.Svc/" }, "route": { "cluster_name": "c1", "timeout": "300ms" } });
    let m = grpc_setup(&[timed], json!([cluster("c1", &[s.addr])]))
        .start()
        .await;
    // The client's deadline (sent as grpc-timeout).
    let r = grpc_call(
        m.listen,
        "slow",
        &["--delay-ms", "3000", "--timeout", "0.5"],
    )
    .await;
    assert_eq!(code(&r), "DEADLINE_EXCEEDED", "{r}");
    assert!(r["seconds"].as_f64().unwrap() < 2.5, "{r}");
    let c = H2Client::connect(m.listen).await;
    // grpc-timeout alone (no client timer): the proxy answers DEADLINE_EXCEEDED itself.
    let started = Instant::now();
    let r = within(
        LIMIT,
        "grpc-timeout 300m",
        grpc_unary(
            &c,
            &format!("/{SERVICE}/Slow"),
            b"3000",
            &[("grpc-timeout", "300m")],
        ),
    )
    .await
    .unwrap();
    assert_trailers_only(&r, "4", "grpc-timeout 300m");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // The route's timeout, no grpc-timeout.
    let started = Instant::now();
    let r = within(
        LIMIT,
        "route timeout",
        grpc_unary(&c, "/timed.Svc/Slow", b"3000", &[]),
    )
    .await
    .unwrap();
    assert_trailers_only(&r, "4", "route timeout 300ms");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(grpc_count(&m, "timed.Svc", "Slow", "4").await, 1);
    // A deadline that is long enough changes nothing.
    let r = within(
        LIMIT,
        "grpc-timeout 5S",
        grpc_unary(
            &c,
            &format!("/{SERVICE}/Slow"),
            b"200",
            &[("grpc-timeout", "5S")],
        ),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.grpc_status()), (200, Some("0")), "{r:?}");
    assert_eq!(grpc_messages(&r.body), vec![b"200".to_vec()]);
}

#[tokio::test]
async fn cancellation_reaches_the_server() {
    let s = GrpcServer::start().await;
    let m = simple(s.addr).await;
    let hold = format!("/{SERVICE}/Hold");
    let r = grpc_call(m.listen, "hold", &["--cancel-after", "0.5"]).await;
    assert_eq!(code(&r), "CANCELLED", "{r}");
    s.wait_event(&format!("CANCELLED {hold}"), LIMIT).await;
    // By hand: RST_STREAM(CANCEL) from the client becomes a cancellation upstream.
    let c = H2Client::connect(m.listen).await;
    let (_resp, mut out) = c
        .open("POST", &hold, &grpc_headers(&[]), false)
        .await
        .unwrap();
    // A whole unary request (END_STREAM), then the wait for the answer is cancelled.
    out.send_data(mosn_tests::h2::grpc_frame(b"hold"), true)
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let holding = format!("HOLDING {hold}");
    while s.events().iter().filter(|l| **l == holding).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "second Hold never reached the server: {:?}",
            s.events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.send_reset(Reason::CANCEL);
    let deadline = Instant::now() + LIMIT;
    let want = format!("CANCELLED {hold}");
    while s.events().iter().filter(|l| **l == want).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second cancellation never arrived: {:?}",
            s.events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn proxy_errors_take_grpc_form() {
    let s = GrpcServer::start().await;
    let resetter = H2Origin::start("resetter").await;
    let routes = [
        json!({ "match": { "prefix": "/dead.Svc/" }, "route": { "cluster_name": "dead" } }),
        json!({ "match": { "prefix": "/reset.Svc/" }, "route": { "cluster_name": "resetter", "prefix_rewrite": "/reset-early/" } }),
        json!({ "match": { "prefix": "/narrow.Svc/" }, "route": { "cluster_name": "narrow" } }),
    ];
    let mut narrow = cluster("narrow", &[s.addr]);
    merge(
        &mut narrow,
        &json!({ "circuit_breakers": [{ "max_requests": 1 }] }),
    );
    let clusters = json!([
        cluster("c1", &[s.addr]),
        cluster("dead", &[dead_addr()]),
        cluster("resetter", &[resetter.addr]),
        narrow
    ]);
    let m = grpc_setup(&routes, clusters).start().await;
    let t = m.listen;
    // With the real client: status names.
    for (service, want) in [
        ("no.Such", "UNIMPLEMENTED"),
        ("dead.Svc", "UNAVAILABLE"),
        ("reset.Svc", "UNAVAILABLE"),
    ] {
        let r = grpc_call(t, "unary", &["--service", service, "--size", "10"]).await;
        assert_eq!(code(&r), want, "{service}: {r}");
        assert!(
            !field(&r, "details").is_empty(),
            "{service}: a grpc-message: {r}"
        );
    }
    // By hand: HTTP 200, trailers-only, the numeric status.
    let c = H2Client::connect(t).await;
    for (path, want) in [
        ("/no.Such/Unary", "12"),
        ("/dead.Svc/Unary", "14"),
        ("/reset.Svc/Unary", "14"),
    ] {
        let r = within(LIMIT, path, grpc_unary(&c, path, b"x", &[]))
            .await
            .unwrap();
        assert_trailers_only(&r, want, path);
        assert!(
            r.header("grpc-message").is_some_and(|m| !m.is_empty()),
            "{path}: {r:?}"
        );
    }
    assert_eq!(grpc_count(&m, "no.Such", "Unary", "12").await, 2);
    assert_eq!(grpc_count(&m, "dead.Svc", "Unary", "14").await, 2);
    assert_eq!(grpc_count(&m, "reset.Svc", "Unary", "14").await, 2);
    assert_eq!(resetter.count(), 2, "both reset calls went upstream");
    // Circuit open (max_requests 1, one call held): UNAVAILABLE at once.
    let (_held, mut out) = c
        .open("POST", "/narrow.Svc/Hold", &grpc_headers(&[]), false)
        .await
        .unwrap();
    out.send_data(mosn_tests::h2::grpc_frame(b"hold"), true)
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    while !s.events().iter().any(|l| l == "HOLDING /narrow.Svc/Hold") {
        assert!(
            Instant::now() < deadline,
            "the held call never arrived: {:?}",
            s.events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = within(
        LIMIT,
        "over the circuit breaker",
        grpc_unary(&c, "/narrow.Svc/Unary", b"x", &[]),
    )
    .await
    .unwrap();
    assert_trailers_only(&r, "14", "circuit open");
    assert_eq!(
        s.calls("/narrow.Svc/Unary"),
        0,
        "the refused call never reached the server"
    );
    out.send_reset(Reason::CANCEL);
}

#[tokio::test]
async fn retry_on_unavailable_reaches_the_good_host() {
    let good = GrpcServer::start().await;
    let bad = H2Origin::start_with("bad", Behavior::GrpcStatus(14)).await;
    let retry = json!({ "retry_on": "cancelled,deadline-exceeded,resource-exhausted,unavailable", "num_retries": 2 });
    let routes =
        [json!({ "match": { "prefix": "/plain.Svc/" }, "route": { "cluster_name": "plain" } })];
    let c1 = cluster("c1", &[bad.addr, good.addr]);
    let setup = {
        let mut s = grpc_setup(
            &routes,
            json!([c1, cluster("plain", &[bad.addr, good.addr])]),
        );
        // The retry policy on the /mosn.test.Peer/ route (the last one).
        let vh = &mut s.virtual_hosts[0]["routers"];
        let last = vh.as_array_mut().unwrap().last_mut().unwrap();
        last["route"]["retry_policy"] = retry;
        s
    };
    let m = setup.start().await;
    let results = grpc_client(m.listen, "unary", &["--size", "100", "--repeat", "10"]).await;
    let codes: Vec<&str> = results.iter().map(code).collect();
    assert_eq!(
        codes,
        vec!["OK"; 10],
        "every call answered by the good host"
    );
    let bad_hits = bad
        .seen()
        .iter()
        .filter(|s| s.path.starts_with(&format!("/{SERVICE}/")))
        .count();
    assert!(
        bad_hits > 0,
        "round robin sent some first tries to the bad host"
    );
    assert_eq!(good.calls(&format!("/{SERVICE}/Unary")), 10);
    let retried = m
        .cluster_metric("mosn_cluster_upstream_rq_retry_total")
        .await;
    assert_eq!(retried as usize, bad_hits, "each UNAVAILABLE retried once");

    // Without a retry policy the bad host's UNAVAILABLE reaches the client.
    let results = grpc_client(
        m.listen,
        "unary",
        &["--service", "plain.Svc", "--size", "100", "--repeat", "10"],
    )
    .await;
    let unavailable = results.iter().filter(|r| code(r) == "UNAVAILABLE").count();
    let plain_bad = bad
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/plain.Svc/"))
        .count();
    assert!(plain_bad > 0);
    assert_eq!(unavailable, plain_bad, "{results:?}");
    assert_eq!(
        results.iter().filter(|r| code(r) == "OK").count(),
        10 - plain_bad
    );
    assert_eq!(
        grpc_count(&m, "plain.Svc", "Unary", "14").await as usize,
        plain_bad
    );
}
