//! `Authenticator` end to end: a client that computes real responses to our challenges.

use super::*;
use md5::Md5;
use sha2::{Digest, Sha256};

const T0: u64 = 1_790_000_000_000;
const LIFE: u64 = 30_000;
const REALM: &[u8] = b"example.com";

fn h(algo: Algorithm, s: &str) -> String {
    let bytes: Vec<u8> = match algo {
        Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
        Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a UA sends: `Digest` credentials computed from the password.
fn creds(algo: Algorithm, user: &str, pw: &str, nonce: &str, nc: u32, uri: &str) -> String {
    let ha1 = h(algo, &format!("{user}:example.com:{pw}"));
    let ha2 = h(algo, &format!("REGISTER:{uri}"));
    let resp = h(algo, &format!("{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc:08x}",
        algo.name()
    )
}

fn auth() -> Authenticator {
    let subs = Subscribers::parse("alice@example.com secret\nbob@Example.com hunter2\n").unwrap();
    Authenticator::new(
        Arc::new(subs),
        NonceKey::new(&[9; 32]),
        ALGORITHMS_DEFAULT.to_vec(),
        LIFE,
    )
}

fn nonce(a: &Authenticator, now_ms: u64) -> String {
    let mut b = [0u8; NONCE_LEN];
    a.key.make_nonce(now_ms, REALM, &mut b).to_owned()
}

fn check<'a>(a: &mut Authenticator, now_ms: u64, v: &'a str) -> AuthOutcome<'a> {
    a.check(now_ms, b"REGISTER", Some(v.as_bytes()), REALM)
}

const CH: AuthOutcome<'static> = AuthOutcome::Challenge { stale: false };
const STALE: AuthOutcome<'static> = AuthOutcome::Challenge { stale: true };

#[test]
fn no_credentials_get_a_challenge_per_algorithm() {
    let mut a = auth();
    assert_eq!(a.check(T0, b"REGISTER", None, REALM), CH);
    assert_eq!(a.counters().challenges, 1);
    let mut c = Challenges::new();
    a.write_challenges(T0, REALM, false, &mut c);
    let v: Vec<&[u8]> = c.iter().collect();
    assert_eq!(v.len(), 2);
    assert!(String::from_utf8_lossy(v[0]).contains("algorithm=SHA-256"));
    assert!(String::from_utf8_lossy(v[1]).contains("algorithm=MD5"));
}

#[test]
fn valid_credentials_for_both_algorithms() {
    let mut a = auth();
    let n = nonce(&a, T0);
    for (i, algo) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
        let v = creds(algo, "alice", "secret", &n, i as u32 + 1, "sip:example.com");
        assert_eq!(
            check(&mut a, T0 + 1000, &v),
            AuthOutcome::Ok { user: b"alice" },
            "{algo:?}"
        );
    }
    let v = creds(Algorithm::Md5, "bob", "hunter2", &n, 3, "sip:example.com");
    let out = a.check(T0, b"REGISTER", Some(v.as_bytes()), b"EXAMPLE.COM");
    assert_eq!(
        out,
        AuthOutcome::Ok { user: b"bob" },
        "realm is case-insensitive"
    );
    assert_eq!(out.authorize_to(b"bob"), out);
    assert_eq!(out.authorize_to(b"alice"), AuthOutcome::Forbidden);
    assert_eq!(AuthOutcome::Forbidden.status(), Some((403, "Forbidden")));
    assert_eq!(a.counters().ok, 3);
    assert_eq!(a.counters().failures, Failures::default());
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut a = auth();
    let n = nonce(&a, T0);
    let wrong = creds(
        Algorithm::Sha256,
        "alice",
        "Secret",
        &n,
        1,
        "sip:example.com",
    );
    let unknown = creds(
        Algorithm::Sha256,
        "mallory",
        "secret",
        &n,
        1,
        "sip:example.com",
    );
    let other_realm_user = creds(
        Algorithm::Sha256,
        "Alice",
        "secret",
        &n,
        1,
        "sip:example.com",
    );
    assert_eq!(check(&mut a, T0, &wrong), CH);
    assert_eq!(check(&mut a, T0, &unknown), CH);
    assert_eq!(
        check(&mut a, T0, &other_realm_user),
        CH,
        "user is case-sensitive"
    );
    let f = a.counters().failures;
    assert_eq!((f.bad_response, f.unknown_user), (1, 2));
    assert_eq!(a.counters().challenges, 3);
}

#[test]
fn stale_only_when_the_response_is_right() {
    let mut a = auth();
    let n = nonce(&a, T0);
    let good = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        &n,
        1,
        "sip:example.com",
    );
    let bad = creds(
        Algorithm::Sha256,
        "alice",
        "wrong",
        &n,
        1,
        "sip:example.com",
    );
    assert_eq!(check(&mut a, T0 + LIFE + 1, &bad), CH);
    assert_eq!(check(&mut a, T0 + LIFE + 1, &good), STALE);
    let c = a.counters();
    assert_eq!((c.stale, c.failures.stale, c.challenges), (1, 1, 2));
    let mut ch = Challenges::new();
    a.write_challenges(T0, REALM, true, &mut ch);
    assert!(ch.iter().all(|v| v.ends_with(b", stale=true")));
    // Within the lifetime the same credentials work.
    assert_eq!(
        check(&mut a, T0 + LIFE, &good),
        AuthOutcome::Ok { user: b"alice" }
    );
}

#[test]
fn replayed_nonce_count_is_rejected_and_a_higher_one_accepted() {
    let mut a = auth();
    let n = nonce(&a, T0);
    let first = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        &n,
        1,
        "sip:example.com",
    );
    assert_eq!(
        check(&mut a, T0, &first),
        AuthOutcome::Ok { user: b"alice" }
    );
    assert_eq!(check(&mut a, T0 + 1, &first), CH, "same nc again");
    assert_eq!(a.counters().failures.replayed_nc, 1);
    let second = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        &n,
        2,
        "sip:example.com",
    );
    assert_eq!(
        check(&mut a, T0 + 2, &second),
        AuthOutcome::Ok { user: b"alice" }
    );
    assert_eq!(check(&mut a, T0 + 3, &first), CH, "lower nc");
}

#[test]
fn forged_and_foreign_nonces_and_realms_are_refused() {
    let mut a = auth();
    let other = Authenticator::new(
        a.subscribers.clone(),
        NonceKey::new(&[1; 32]),
        vec![Algorithm::Md5],
        LIFE,
    );
    let foreign = nonce(&other, T0);
    let v = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        &foreign,
        1,
        "sip:example.com",
    );
    assert_eq!(check(&mut a, T0, &v), CH);
    let v = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        "made-up",
        1,
        "sip:example.com",
    );
    assert_eq!(check(&mut a, T0, &v), CH);
    assert_eq!(a.counters().failures.invalid_nonce, 2);
    // Credentials for another realm are not considered.
    let n = nonce(&a, T0);
    let v = creds(
        Algorithm::Sha256,
        "alice",
        "secret",
        &n,
        1,
        "sip:example.com",
    );
    assert_eq!(
        a.check(T0, b"REGISTER", Some(v.as_bytes()), b"example.org"),
        CH
    );
    assert_eq!(a.counters().failures.realm_mismatch, 1);
}

#[test]
fn unknown_scheme_unsupported_and_malformed() {
    let mut a = auth();
    // RFC 4475 §3.3.7 regaut01.
    assert_eq!(
        check(&mut a, T0, "NoOneKnowsThisScheme opaque-data=here"),
        CH
    );
    assert_eq!(a.counters().failures.unknown_scheme, 1);
    let n = nonce(&a, T0);
    let sess = creds(Algorithm::Md5, "alice", "secret", &n, 1, "sip:x")
        .replace("algorithm=MD5", "algorithm=MD5-sess");
    assert_eq!(check(&mut a, T0, &sess), CH);
    let mut md5_only = auth();
    md5_only.algorithms = vec![Algorithm::Sha256];
    let md5 = creds(Algorithm::Md5, "alice", "secret", &n, 1, "sip:x");
    assert_eq!(check(&mut md5_only, T0, &md5), CH, "algorithm not offered");
    let no_qop = format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{n}\", uri=\"sip:x\", response=\"{}\"",
        "0".repeat(32)
    );
    assert_eq!(check(&mut a, T0, &no_qop), CH);
    assert_eq!(a.counters().failures.unsupported, 2);
    let bad = check(&mut a, T0, "Digest username=\"alice, realm=\"example.com\"");
    assert_eq!(bad, AuthOutcome::BadRequest("Malformed Authorization"));
    assert_eq!(bad.status(), Some((400, "Malformed Authorization")));
    let huge = format!("Digest username=\"{}\"", "a".repeat(10_000));
    assert_eq!(
        check(&mut a, T0, &huge),
        AuthOutcome::BadRequest("Authorization Too Long")
    );
    assert_eq!(a.counters().failures.malformed, 2);
}

#[test]
fn reload_swaps_subscribers() {
    let mut a = auth();
    let n = nonce(&a, T0);
    let v = creds(Algorithm::Sha256, "carol", "pw", &n, 1, "sip:example.com");
    assert_eq!(check(&mut a, T0, &v), CH);
    a.subscribers = Arc::new(Subscribers::parse("carol@example.com pw").unwrap());
    assert_eq!(check(&mut a, T0, &v), AuthOutcome::Ok { user: b"carol" });
}

proptest::proptest! {
    #[test]
    fn garbage_credentials_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let mut a = auth();
        let out = a.check(T0, b"REGISTER", Some(&bytes), REALM);
        let authenticated = matches!(out, AuthOutcome::Ok { .. });
        proptest::prop_assert!(!authenticated);
    }
}

/// [`Authenticator::check_any`] on `first` and `others` for a REGISTER to [`REALM`].
fn check_all<'a>(a: &mut Authenticator, first: &'a [u8], others: &[&'a [u8]]) -> AuthOutcome<'a> {
    a.check_any(T0, b"REGISTER", Some(first), others.iter().copied(), REALM)
}

/// RFC 3261 §22.4: a request that met two challenges carries credentials for both
/// realms; ours is checked wherever it stands among the first
/// `AUTHORIZATION_VALUES_MAX` values.
#[test]
fn credentials_for_our_realm_are_found_among_several() {
    let mut a = auth();
    let n = nonce(&a, T0);
    let alice = |nc| {
        creds(
            Algorithm::Sha256,
            "alice",
            "secret",
            &n,
            nc,
            "sip:example.com",
        )
    };
    let malformed = b"Digest username=\"alice, realm=".as_slice();
    let ours = alice(1);
    let proxy = ours.replace("realm=\"example.com\"", "realm=\"proxy.example.net\"");
    let other = proxy.replace("proxy.example.net", "other.example.org");
    let ok = AuthOutcome::Ok { user: b"alice" };
    assert_eq!(check_all(&mut a, proxy.as_bytes(), &[ours.as_bytes()]), ok);

    // A malformed first value does not hide valid credentials after it.
    let ours = alice(2);
    assert_eq!(check_all(&mut a, malformed, &[ours.as_bytes()]), ok);
    assert_eq!(a.counters().ok, 2);
    assert_eq!(a.counters().failures, Failures::default());

    // None for our realm: the first decides, as with one value.
    assert_eq!(check_all(&mut a, proxy.as_bytes(), &[other.as_bytes()]), CH);
    assert_eq!(a.counters().failures.realm_mismatch, 1);
    let out = check_all(&mut a, malformed, &[other.as_bytes()]);
    assert!(matches!(out, AuthOutcome::BadRequest(_)), "{out:?}");

    // Past AUTHORIZATION_VALUES_MAX values nothing more is parsed.
    let ours = alice(3);
    let mut values: Vec<&[u8]> = vec![other.as_bytes(); AUTHORIZATION_VALUES_MAX - 1];
    values.push(ours.as_bytes());
    assert_eq!(
        check_all(&mut a, proxy.as_bytes(), &values),
        CH,
        "the ninth value is not read"
    );
    values.remove(0);
    assert_eq!(
        check_all(&mut a, proxy.as_bytes(), &values),
        ok,
        "the eighth is"
    );
}
