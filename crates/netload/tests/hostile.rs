//! The server survives hostile and broken peers while serving a real test on another
//! connection: garbage, oversized length prefixes, wrong versions, half-open and slow
//! peers, bogus data connections, and a client that vanishes mid-test.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use netload::client::{ClientOptions, run_stream_test};
use netload::control::{self, ClientMsg, DATA_MAGIC, MAX_SERVER_FRAME, Preamble, ServerMsg};
use netload::server::{Server, ServerConfig, ServerHandle};
use netload::spec::{Protocol, TestSpec};

fn server() -> ServerHandle {
    let config = ServerConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        phase_timeout: Duration::from_millis(800),
        ..ServerConfig::default()
    };
    Server::bind(config).unwrap().spawn().unwrap()
}

fn connect(srv: &ServerHandle) -> TcpStream {
    let s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads whatever the server answers until it closes; returns the error message if any.
fn server_answer(mut s: TcpStream) -> Option<String> {
    match control::read_frame::<ServerMsg>(&mut s, MAX_SERVER_FRAME, None) {
        Ok(ServerMsg::Error { message }) => Some(message),
        _ => None,
    }
}

/// Says hello as a well-behaved client and returns the session cookie.
fn hello(s: &mut TcpStream) -> control::Cookie {
    control::write_frame(
        &mut *s,
        &ClientMsg::Hello {
            protocol: "netload".into(),
            version: 1,
        },
    )
    .unwrap();
    match control::read_frame::<ServerMsg>(s, MAX_SERVER_FRAME, None).unwrap() {
        ServerMsg::Welcome { cookie, .. } => cookie,
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn real_test(srv: &ServerHandle) {
    let mut spec = TestSpec::new(Protocol::Tcp);
    spec.duration_s = 0.5;
    let out = run_stream_test(
        &ClientOptions::new("127.0.0.1", srv.addr.port(), spec),
        &mut |_| {},
    )
    .expect("a real test still runs");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.report.flows[0].receiver_bytes > 0);
}

#[test]
fn garbage_and_bad_frames_get_clear_errors() {
    let srv = server();
    // Garbage that parses as a small length then junk JSON.
    let mut s = connect(&srv);
    s.write_all(&[0, 0, 0, 5, b'{', b'x', b'!', 0xff, 0])
        .unwrap();
    let msg = server_answer(s).expect("an error frame");
    assert!(msg.contains("malformed"), "{msg}");

    // Oversized length prefix: rejected without reading (or allocating) the body.
    let mut s = connect(&srv);
    s.write_all(&[0x00, 0xff, 0xff, 0xff]).unwrap();
    let msg = server_answer(s).expect("an error frame");
    assert!(msg.contains("exceeds"), "{msg}");

    // Wrong protocol version.
    let mut s = connect(&srv);
    control::write_frame(
        &mut s,
        &ClientMsg::Hello {
            protocol: "netload".into(),
            version: 99,
        },
    )
    .unwrap();
    let msg = server_answer(s).expect("an error frame");
    assert!(msg.contains("version 99"), "{msg}");

    // Wrong first message.
    let mut s = connect(&srv);
    control::write_frame(&mut s, &ClientMsg::Start).unwrap();
    let msg = server_answer(s).expect("an error frame");
    assert!(msg.contains("expected hello"), "{msg}");

    // A data connection with an unknown cookie is closed.
    let mut s = connect(&srv);
    let pre = Preamble {
        cookie: control::Cookie::random(),
        stream: 0,
    };
    s.write_all(&pre.encode(DATA_MAGIC)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);

    real_test(&srv);
}

#[test]
fn half_open_slow_and_vanishing_peers_do_not_block_real_tests() {
    let srv = server();
    // Half-open: connects and says nothing. Slow: dribbles a hello byte by byte.
    let idle: Vec<TcpStream> = (0..10).map(|_| connect(&srv)).collect();
    let slow = {
        let mut s = connect(&srv);
        thread::spawn(move || {
            let frame = control::encode_frame(&ClientMsg::Hello {
                protocol: "netload".into(),
                version: 1,
            });
            // The whole hello would take ~13 s at this pace; the server's deadline for the
            // whole phase (0.8 s, not per read) must cut it off.
            for b in frame {
                if s.write_all(&[b]).is_err() {
                    return true;
                }
                thread::sleep(Duration::from_millis(300));
            }
            false
        })
    };
    // A client that sets a test up and vanishes before its data streams connect.
    {
        let mut s = connect(&srv);
        hello(&mut s);
        let mut spec = TestSpec::new(Protocol::Tcp);
        spec.duration_s = 1.0;
        control::write_frame(&mut s, &ClientMsg::Setup { spec }).unwrap();
        let _: ServerMsg = control::read_frame(&mut s, MAX_SERVER_FRAME, None).unwrap();
    }
    real_test(&srv);
    drop(idle);
    assert!(
        slow.join().unwrap(),
        "a slow peer held its connection past the phase deadline"
    );
    real_test(&srv);
}

#[test]
fn client_vanishing_mid_test_frees_the_server() {
    let srv = server();
    let port = srv.addr.port();
    // Run a test on a thread and kill its sockets by dropping the process's view: we
    // emulate this by a client whose spec runs long, then the server must still answer others.
    let vanish = thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let cookie = hello(&mut s);
        let mut spec = TestSpec::new(Protocol::Tcp);
        spec.duration_s = 30.0;
        control::write_frame(&mut s, &ClientMsg::Setup { spec }).unwrap();
        let _: ServerMsg = control::read_frame(&mut s, MAX_SERVER_FRAME, None).unwrap();
        let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
        data.write_all(&Preamble { cookie, stream: 0 }.encode(DATA_MAGIC))
            .unwrap();
        let _: ServerMsg = control::read_frame(&mut s, MAX_SERVER_FRAME, None).unwrap(); // ready
        control::write_frame(&mut s, &ClientMsg::Start).unwrap();
        data.write_all(&vec![0u8; 100_000]).unwrap();
        // Vanish: both connections close mid-test.
    });
    vanish.join().unwrap();
    real_test(&srv);
}
