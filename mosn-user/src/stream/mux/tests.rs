//! Tests of the multiplexed pool over real loopback sockets. They speak a tiny test protocol
//! ([`support::TestProto`]) so that they do not depend on the RPC codecs.

mod support;

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep, timeout};

use self::support::*;
use super::*;
use crate::protocol::xprotocol::Kind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_connection_and_get_their_own_responses() {
    const N: usize = 200;
    within(async {
        // The server takes all N requests, then answers them in reverse order.
        let wire_ids = Arc::new(Mutex::new(Vec::new()));
        let ids = Arc::clone(&wire_ids);
        let server = Server::start(move |mut s, _| {
            let ids = Arc::clone(&ids);
            async move {
                let mut got = Vec::new();
                while got.len() < N {
                    let Some(f) = read_frame(&mut s).await else {
                        return;
                    };
                    assert_eq!(f.kind, REQUEST);
                    got.push(f);
                }
                ids.lock().unwrap().extend(got.iter().map(|f| f.id));
                for f in got.iter().rev() {
                    write_frame(&mut s, RESPONSE, f.id, &f.payload).await;
                }
                let _ = read_frame(&mut s).await;
            }
        })
        .await;
        let env = Arc::new(Env::new(server.addr, 10, settings(1024)));
        let calls: Vec<_> = (0..N)
            .map(|i| {
                let env = Arc::clone(&env);
                tokio::spawn(async move {
                    // Callers from different downstream connections use the same ids.
                    let id = (i % 3) as u32;
                    let body = (i as u32).to_be_bytes();
                    let resp = env.call(id, &body).await.unwrap();
                    assert_eq!(resp.kind, Kind::Response);
                    assert_eq!(
                        resp.request_id,
                        u64::from(id),
                        "the caller's id is restored"
                    );
                    assert_eq!(&resp.raw[1..5], &id.to_be_bytes(), "in the raw bytes too");
                    assert_eq!(payload(&resp), body, "call {i} got its own response");
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        let mut ids = wire_ids.lock().unwrap().clone();
        assert_eq!(ids.len(), N);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), N, "every request has its own id on the wire");
        server.assert_accepted(1).await;
        let live = env.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].in_flight(), 0, "every slot was given back");
        let m = &env.cluster.metrics;
        assert_eq!(
            (m.upstream_cx_total.get(), m.upstream_cx_active.get()),
            (1, 1)
        );
        assert!(m.upstream_bytes_sent.get() >= (N * (HEADER + 4)) as u64);
        assert!(m.upstream_bytes_received.get() >= (N * (HEADER + 4)) as u64);
    })
    .await;
}

#[tokio::test]
async fn full_connections_make_the_pool_open_more() {
    within(async {
        let (server, _) = Server::echo().await;
        let env = Env::new(server.addr, 10, settings(10));
        let held: Vec<MuxConn> = join_all((0..30).map(|_| env.get()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        server.assert_accepted(3).await;
        let live = env.live();
        assert_eq!(live.len(), 3);
        assert!(live.iter().all(|c| c.in_flight() == 10), "10 requests each");
        let resps = join_all(
            held.into_iter()
                .enumerate()
                .map(|(i, c)| c.call(frame(REQUEST, 5, &[i as u8]))),
        )
        .await;
        for (i, r) in resps.into_iter().enumerate() {
            assert_eq!(payload(&r.unwrap()), [i as u8]);
        }
        assert!(live.iter().all(|c| c.in_flight() == 0));
        // Room again: no new connection.
        env.call(1, b"again").await.unwrap();
        server.assert_accepted(3).await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_first_gets_open_one_connection() {
    within(async {
        let (server, _) = Server::echo().await;
        let env = Env::new(server.addr, 10, settings(1024));
        let conns: Vec<MuxConn> = join_all((0..50).map(|_| env.get()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(conns.iter().all(|c| c.conn.id == conns[0].conn.id));
        assert_eq!(conns[0].conn.in_flight(), 50);
        assert_eq!(env.live().len(), 1);
        assert_eq!(conns[0].host().address, server.addr);
        server.assert_accepted(1).await;
        // get() and call() futures are Send: the proxy spawns them on a multi-threaded runtime.
        fn send<T: Send>(t: T) -> T {
            t
        }
        let c = send(env.get()).await.unwrap();
        send(c.call(frame(REQUEST, 1, b"x"))).await.unwrap();
        drop(conns);
        assert_eq!(env.cluster.metrics.upstream_cx_total.get(), 1);
    })
    .await;
}

#[tokio::test]
async fn refused_connect_fails_every_waiting_caller() {
    within(async {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let env = Env::new(addr, 10, settings(1024));
        let results = join_all((0..5).map(|_| env.get())).await;
        for r in results {
            match r {
                Err(PoolError::Connect { addr: a, source }) => {
                    assert_eq!(a, addr);
                    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
                }
                other => panic!("expected a connect error, got {other:?}"),
            }
        }
        let m = &env.cluster.metrics;
        assert_eq!(m.upstream_cx_total.get(), 1, "one attempt for all five");
        assert!(env.get().await.is_err());
        assert_eq!(m.upstream_cx_total.get(), 2, "a later get tries again");
        assert_eq!(m.upstream_cx_active.get(), 0);
    })
    .await;
}

#[tokio::test]
async fn server_close_resets_calls_in_flight_and_the_next_get_reconnects() {
    within(async {
        let log = Log::default();
        let l = Arc::clone(&log);
        let server = Server::start(move |mut s, n| {
            let l = Arc::clone(&l);
            async move {
                if n == 0 {
                    // Takes three requests, then closes without answering.
                    for _ in 0..3 {
                        read_frame(&mut s).await;
                    }
                } else {
                    echo(s, l).await;
                }
            }
        })
        .await;
        let env = Env::new(server.addr, 10, settings(1024));
        let results = join_all((0..3).map(|i| env.call(i, b"x"))).await;
        for r in results {
            assert!(matches!(r, Err(CallError::Reset(_))), "{r:?}");
        }
        assert!(env.live().is_empty(), "the closed connection left the pool");
        assert_eq!(env.cluster.metrics.upstream_cx_active.get(), 0);
        let resp = env.call(9, b"y").await.unwrap();
        assert_eq!(payload(&resp), b"y");
        server.assert_accepted(2).await;
        assert_eq!(env.cluster.metrics.upstream_cx_active.get(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_request_on_a_closed_connection_is_not_sent() {
    within(async {
        // Closes every connection at once.
        let server = Server::start(|s, _| async move { drop(s) }).await;
        let env = Env::new(server.addr, 10, settings(1024));
        let c = env.get().await.unwrap();
        let conn = Arc::clone(&c.conn);
        until(|| conn.is_closed()).await;
        let r = c.call(frame(REQUEST, 1, b"x")).await;
        assert!(matches!(r, Err(CallError::NotSent(_))), "{r:?}");
        assert_eq!(conn.in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_response_after_the_caller_gave_up_is_discarded() {
    within(async {
        let server = Server::start(|s, _| async move {
            let (mut r, w) = s.into_split();
            let w = Arc::new(tokio::sync::Mutex::new(w));
            while let Some(f) = read_frame(&mut r).await {
                let w = Arc::clone(&w);
                tokio::spawn(async move {
                    if f.payload == b"slow" {
                        sleep(Duration::from_millis(300)).await;
                    }
                    let bytes = encode(RESPONSE, f.id, &f.payload);
                    let _ = w.lock().await.write_all(&bytes).await;
                });
            }
        })
        .await;
        let env = Env::new(server.addr, 10, settings(1024));
        let gave_up = timeout(Duration::from_millis(50), env.call(7, b"slow")).await;
        assert!(gave_up.is_err(), "the slow call timed out");
        assert_eq!(env.live()[0].in_flight(), 0, "its slot came back at once");
        assert_eq!(payload(&env.call(7, b"b").await.unwrap()), b"b");
        // The slow response has arrived by now and went nowhere.
        sleep(Duration::from_millis(400)).await;
        let resp = env.call(7, b"c").await.unwrap();
        assert_eq!((resp.request_id, payload(&resp)), (7, &b"c"[..]));
        server.assert_accepted(1).await;
    })
    .await;
}

#[tokio::test]
async fn idle_connections_send_heartbeats_and_answered_ones_keep_them_open() {
    within(async {
        let (server, log) = Server::echo().await;
        let env = Env::new(server.addr, 10, heartbeats(100, 2));
        env.call(1, b"open").await.unwrap();
        sleep(Duration::from_millis(550)).await;
        let hb: Vec<Wire> = logged(&log)
            .into_iter()
            .filter(|w| w.kind == HEARTBEAT)
            .collect();
        assert!(
            (3..=6).contains(&hb.len()),
            "one heartbeat per idle interval, got {}",
            hb.len()
        );
        assert!(hb.iter().all(|w| w.payload.is_empty()));
        // Far more heartbeats than max_failures, all answered: still the same connection.
        assert_eq!(payload(&env.call(2, b"still").await.unwrap()), b"still");
        server.assert_accepted(1).await;
        assert_eq!(env.live().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn busy_connections_send_no_heartbeats() {
    within(async {
        let (server, log) = Server::echo().await;
        let env = Env::new(server.addr, 10, heartbeats(200, 2));
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            env.call(1, b"busy").await.unwrap();
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&log, HEARTBEAT), 0);
    })
    .await;
}

#[tokio::test]
async fn unanswered_heartbeats_close_the_connection() {
    within(async {
        let log = Log::default();
        let eof = Arc::new(Mutex::new(None));
        let (l, e) = (Arc::clone(&log), Arc::clone(&eof));
        // Reads everything, answers nothing.
        let server = Server::start(move |mut s, _| {
            let (l, e) = (Arc::clone(&l), Arc::clone(&e));
            async move {
                while let Some(f) = read_frame(&mut s).await {
                    l.lock().unwrap().push(f);
                }
                *e.lock().unwrap() = Some(Instant::now());
            }
        })
        .await;
        let env = Env::new(server.addr, 10, heartbeats(100, 2));
        let start = Instant::now();
        let r = env.call(1, b"lost").await;
        let took = start.elapsed();
        match &r {
            Err(CallError::Reset(m)) => assert!(m.contains("2 heartbeats"), "{m}"),
            other => panic!("expected a reset, got {other:?}"),
        }
        // Idle for one interval, then two unanswered heartbeats of one interval each.
        assert!(took >= Duration::from_millis(280), "closed after {took:?}");
        until(|| eof.lock().unwrap().is_some()).await;
        assert_eq!(count(&log, HEARTBEAT), 2);
        assert!(env.live().is_empty());
        assert_eq!(env.cluster.metrics.upstream_cx_active.get(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_heartbeat_from_the_server_is_answered() {
    within(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let server = Server::start(move |mut s, _| {
            let tx = Arc::clone(&tx);
            async move {
                write_frame(&mut s, HEARTBEAT, 77, &[]).await;
                while let Some(f) = read_frame(&mut s).await {
                    match f.kind {
                        HEARTBEAT_REPLY => {
                            if let Some(tx) = tx.lock().unwrap().take() {
                                let _ = tx.send(f);
                            }
                        }
                        REQUEST => {
                            write_frame(&mut s, RESPONSE, f.id, &f.payload).await;
                        }
                        _ => {}
                    }
                }
            }
        })
        .await;
        let env = Env::new(server.addr, 10, settings(1024));
        env.call(1, b"x").await.unwrap();
        let reply = rx.await.unwrap();
        assert_eq!((reply.kind, reply.id), (HEARTBEAT_REPLY, 77));
    })
    .await;
}

#[tokio::test]
async fn oneway_requests_are_written_and_expect_nothing() {
    within(async {
        let (server, log) = Server::echo().await;
        let env = Env::new(server.addr, 10, settings(1024));
        let c = env.get().await.unwrap();
        let conn = Arc::clone(&c.conn);
        c.send_oneway(frame(ONEWAY, 3, b"fire")).await.unwrap();
        assert_eq!(conn.in_flight(), 0);
        assert_eq!(payload(&env.call(4, b"then").await.unwrap()), b"then");
        let frames = logged(&log);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].kind, &frames[0].payload[..]),
            (ONEWAY, &b"fire"[..])
        );
        assert_ne!(frames[0].id, frames[1].id, "oneways get their own ids too");
    })
    .await;
}

#[tokio::test]
async fn no_connection_slot_and_no_room_is_an_overflow() {
    within(async {
        let (server, _) = Server::echo().await;
        let env = Env::new(server.addr, 1, settings(1));
        let held = env.get().await.unwrap();
        match env.get().await {
            Err(PoolError::Overflow(c)) => assert_eq!(c, "rpc"),
            other => panic!("expected an overflow, got {other:?}"),
        }
        assert_eq!(env.cluster.metrics.upstream_cx_overflow.get(), 1);
        drop(held);
        env.call(1, b"x").await.unwrap();
        server.assert_accepted(1).await;
    })
    .await;
}

#[tokio::test]
async fn ping_pong_connections_carry_one_request_each() {
    within(async {
        let server = Server::start(|mut s, _| async move {
            while let Some(f) = read_frame(&mut s).await {
                if f.payload == b"slow" {
                    sleep(Duration::from_millis(200)).await;
                }
                // Ping-pong servers need not echo the id.
                write_frame(&mut s, RESPONSE, 0, &f.payload).await;
            }
        })
        .await;
        let env = Env::new(server.addr, 10, settings(1024));
        let (a, b) = tokio::join!(env.get_with(&PING_PONG), env.get_with(&PING_PONG));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.conn.id, b.conn.id);
        let resp = a.call(frame(REQUEST, 9, b"a")).await.unwrap();
        assert_eq!((resp.request_id, payload(&resp)), (9, &b"a"[..]));
        drop(b);
        server.assert_accepted(2).await;

        // A caller that gives up keeps its connection busy until the response arrives.
        let c = env.get_with(&PING_PONG).await.unwrap();
        let busy = Arc::clone(&c.conn);
        assert!(
            timeout(
                Duration::from_millis(50),
                c.call(frame(REQUEST, 1, b"slow"))
            )
            .await
            .is_err()
        );
        assert_eq!(busy.in_flight(), 1);
        let d = env.get_with(&PING_PONG).await.unwrap();
        assert_ne!(d.conn.id, busy.id);
        drop(d);
        until(|| busy.in_flight() == 0).await;
        assert_eq!(env.live_with(&PING_PONG).len(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_undecodable_frame_closes_the_connection() {
    within(async {
        let log = Log::default();
        let l = Arc::clone(&log);
        let server = Server::start(move |mut s, n| {
            let l = Arc::clone(&l);
            async move {
                if n == 0 {
                    if read_frame(&mut s).await.is_some() {
                        write_frame(&mut s, 99, 1, b"garbage").await;
                    }
                    let _ = read_frame(&mut s).await;
                } else {
                    echo(s, l).await;
                }
            }
        })
        .await;
        let env = Env::new(server.addr, 10, settings(1024));
        let r = env.call(1, b"x").await;
        match &r {
            Err(CallError::Reset(m)) => assert!(m.contains("undecodable"), "{m}"),
            other => panic!("expected a reset, got {other:?}"),
        }
        env.call(2, b"y").await.unwrap();
        server.assert_accepted(2).await;
    })
    .await;
}

#[tokio::test]
async fn shutting_down_ends_the_connections() {
    within(async {
        let eofs = Arc::new(AtomicUsize::new(0));
        let log = Log::default();
        let (e, l) = (Arc::clone(&eofs), Arc::clone(&log));
        // Never answers.
        let server = Server::start(move |mut s, _| {
            let (e, l) = (Arc::clone(&e), Arc::clone(&l));
            async move {
                while let Some(f) = read_frame(&mut s).await {
                    l.lock().unwrap().push(f);
                }
                e.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;

        // Dropping the pools.
        let env = Arc::new(Env::new(server.addr, 10, settings(1024)));
        let c = env.get().await.unwrap();
        let call = tokio::spawn(c.call(frame(REQUEST, 1, b"x")));
        until(|| count(&log, REQUEST) == 1).await;
        let Env { pools, cluster, .. } = Arc::into_inner(env).unwrap();
        drop(pools);
        let r = call.await.unwrap();
        assert!(
            matches!(&r, Err(CallError::Reset(m)) if m.contains("shutting down")),
            "{r:?}"
        );
        until(|| eofs.load(Ordering::SeqCst) == 1).await;
        until(|| cluster.metrics.upstream_cx_active.get() == 0).await;

        // Cancelling the shutdown token.
        let stop = CancellationToken::new();
        let mut env = Env::new(server.addr, 10, settings(1024));
        env.pools = MuxPools::with_shutdown(&stop);
        let c = env.get().await.unwrap();
        stop.cancel();
        until(|| eofs.load(Ordering::SeqCst) == 2).await;
        assert!(matches!(
            c.call(frame(REQUEST, 1, b"x")).await,
            Err(CallError::NotSent(_))
        ));
        assert!(env.live().is_empty());
    })
    .await;
}

/// Hosts left with nothing (a failed connect, a closed connection) are pruned once many are
/// known, as an ORIGINAL_DST cluster meets a new host per destination; a host with a live
/// connection stays.
#[tokio::test]
async fn unused_hosts_are_pruned() {
    within(async {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = server.local_addr().unwrap();
        let env = Env::new(live_addr, 1024, settings(1024));
        // One live connection (the server accepts; nothing needs to be answered).
        let accept = tokio::spawn(async move { server.accept().await.map(|(s, _)| s) });
        drop(env.get().await.expect("connects"));
        let _held = accept.await.unwrap().unwrap();
        // Many dead destinations on ports nobody listens on.
        let mut dead = Vec::new();
        for _ in 0..(PRUNE_AT + 50) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            dead.push(l.local_addr().unwrap());
        }
        for addr in &dead {
            let host = Arc::new(Host::from_addr(*addr));
            let r = env
                .pools
                .get(&env.cluster, &host, &MUX, &env.settings)
                .await;
            assert!(matches!(r, Err(PoolError::Connect { .. })), "{r:?}");
        }
        let known = env.pools.hosts.read().unwrap().len();
        assert!(known <= PRUNE_AT, "{known} hosts kept");
        assert_eq!(
            env.pools.live("rpc", live_addr, MUX.name()).len(),
            1,
            "the host with a connection is kept"
        );
    })
    .await;
}
