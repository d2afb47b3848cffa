//! `assert_eventually!`: poll a condition until it holds or a timeout passes.

/// Polls `cond` every 50 ms until it is true; panics after `timeout` (a `Duration`).
/// An optional format message is added to the panic.
///
/// ```
/// use std::time::Duration;
/// pacmesh_tests::assert_eventually!(1 + 1 == 2, Duration::from_secs(1));
/// pacmesh_tests::assert_eventually!(true, Duration::from_secs(1), "with {}", "context");
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!($cond, $timeout, "{}", stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!("still not true after {:?}: {}", timeout, format_args!($($msg)+));
            }
            ::std::thread::sleep(::std::time::Duration::from_millis(50));
        }
    }};
}
