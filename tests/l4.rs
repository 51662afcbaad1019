//! L4 proxying through `mosn start`, for `fast_path: userspace` and `fast_path: auto` (which
//! falls back to userspace when the kernel programs cannot load, e.g. unprivileged). The same
//! scenarios run with `fast_path: kernel` in `kernel.rs`.
//!
//! Each test starts its own daemon (free ports, generated config) and its own upstreams.

use std::time::Duration;

use mosn_tests::{FastPath, within};
use mosn_tests::{resets, scenarios};

/// Upper bound of any one test, so a hang fails (printing the daemon's log) instead of
/// stalling the suite.
const TEST_LIMIT: Duration = Duration::from_secs(240);

macro_rules! l4_tests {
    ($mode:ident, $fast_path:expr) => {
        mod $mode {
            use super::*;

            const FP: FastPath = $fast_path;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn echo() {
                within(TEST_LIMIT, "echo", scenarios::echo_exchanges(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bulk_256mib_each_way_hash_checked() {
                within(TEST_LIMIT, "bulk", scenarios::bulk_each_way(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_close_client_first() {
                within(
                    TEST_LIMIT,
                    "half close",
                    scenarios::half_close_client_first(FP),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn half_close_upstream_first() {
                within(
                    TEST_LIMIT,
                    "half close",
                    scenarios::half_close_upstream_first(FP),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_1000_connections() {
                within(
                    TEST_LIMIT,
                    "1000 connections",
                    scenarios::concurrent(FP, 1000),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn upstream_refused() {
                within(TEST_LIMIT, "refused", scenarios::upstream_refused(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_hosts_down() {
                within(TEST_LIMIT, "all hosts down", scenarios::all_hosts_down(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retry_dead_host_then_live_host() {
                within(TEST_LIMIT, "retry", scenarios::retry_next_host(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_robin_alternates_hosts() {
                within(TEST_LIMIT, "round robin", scenarios::round_robin(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn upstream_reset_midstream() {
                within(
                    TEST_LIMIT,
                    "upstream reset",
                    resets::upstream_reset_midstream(FP),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn downstream_reset_midstream() {
                within(
                    TEST_LIMIT,
                    "downstream reset",
                    resets::downstream_reset_midstream(FP),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reset_after_half_close() {
                within(
                    TEST_LIMIT,
                    "reset after half-close",
                    resets::reset_after_half_close(FP),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn idle_timeout() {
                within(TEST_LIMIT, "idle timeout", scenarios::idle_timeout(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn graceful_shutdown_drains_live_connection() {
                within(TEST_LIMIT, "graceful drain", scenarios::graceful_drain(FP)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn graceful_shutdown_gives_up_after_timeout() {
                within(
                    TEST_LIMIT,
                    "graceful timeout",
                    scenarios::graceful_timeout(FP),
                )
                .await;
            }
        }
    };
}

l4_tests!(userspace, FastPath::Userspace);
l4_tests!(auto, FastPath::Auto);
