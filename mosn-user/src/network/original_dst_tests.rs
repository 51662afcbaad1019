//! Original destinations on real loopback sockets, with a fake capture record. The
//! listener wiring with a tcp_proxy behind it is tested in `tcp_proxy`.

use tokio::net::TcpListener;

use super::*;
use crate::network::ConnectionFuture;
use crate::network::test_util::{FakeLookup, tcp_pair};

/// A filter chain that only has a name.
struct Named(String);

impl ConnectionHandler for Named {
    fn listener(&self) -> &str {
        &self.0
    }

    fn handle(self: Arc<Self>, _: crate::network::Conn, _: SocketAddr, _: Destination) -> ConnectionFuture {
        Box::pin(async {})
    }
}

#[tokio::test]
async fn tproxy_uses_the_local_address() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, peer) = l.accept().await.unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    let lookup = FakeLookup::default();
    lookup.set(Some("10.9.9.9:80".parse().unwrap()));

    let got = recover(OriginalDst::Tproxy, &s, peer, Some(&lookup));
    assert_eq!(got, Some(s.local_addr().unwrap()));
    assert!(
        lookup.asked.lock().unwrap().is_empty(),
        "tproxy never asks the record"
    );

    let got = recover(OriginalDst::Redirect, &s, peer, Some(&lookup));
    assert_eq!(
        got,
        Some("10.9.9.9:80".parse().unwrap()),
        "redirect asks the record first"
    );
    assert_eq!(*lookup.asked.lock().unwrap(), vec![peer]);

    // Not in the record: SO_ORIGINAL_DST. This connection was not redirected, so the kernel
    // knows nothing (ENOENT/ENOPROTOOPT) or, with conntrack loaded, its own destination.
    lookup.set(None);
    let got = recover(OriginalDst::Redirect, &s, peer, Some(&lookup));
    assert!(
        got.is_none() || got == Some(s.local_addr().unwrap()),
        "{got:?}"
    );
    assert_eq!(recover(OriginalDst::Redirect, &s, peer, None), got);
}

#[tokio::test]
async fn so_original_dst_answers_for_ipv4_and_ipv6() {
    // Without a redirect the answer is an error or the connection's own destination; either
    // way the right struct for the family is decoded (no garbage address).
    let (_c, s) = tcp_pair().await;
    match sockopt::original_dst(&s, false) {
        Ok(a) => assert_eq!(a, s.local_addr().unwrap()),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)),
            "{e}"
        ),
    }
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        return; // no IPv6 loopback here
    };
    let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    match sockopt::original_dst(&s, true) {
        Ok(a) => assert_eq!(a, s.local_addr().unwrap()),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)),
            "{e}"
        ),
    }
}

#[test]
fn listener_index_prefers_the_exact_address() {
    // Only the lookup order matters here, so the filter chains are stand-ins.
    let proxy = |name: &str| -> Arc<dyn ConnectionHandler> { Arc::new(Named(name.to_owned())) };
    let index = ListenerIndex::new([
        ("0.0.0.0:80".parse().unwrap(), proxy("any4")),
        ("[::]:80".parse().unwrap(), proxy("any6")),
        ("10.0.0.1:80".parse().unwrap(), proxy("exact")),
    ]);
    let name = |a: &str| {
        index
            .find(a.parse().unwrap())
            .map(|(_, p)| p.listener().to_owned())
    };
    assert_eq!(name("10.0.0.1:80").as_deref(), Some("exact"));
    assert_eq!(name("10.0.0.2:80").as_deref(), Some("any4"));
    assert_eq!(name("[fd00::1]:80").as_deref(), Some("any6"));
    assert_eq!(name("10.0.0.1:81"), None);
    assert!(binds(
        "0.0.0.0:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap()
    ));
    assert!(!binds(
        "0.0.0.0:80".parse().unwrap(),
        "[::1]:80".parse().unwrap()
    ));
    assert!(!binds(
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap()
    ));
}
