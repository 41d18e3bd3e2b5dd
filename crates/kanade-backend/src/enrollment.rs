//! The rules of enrolment, renewal and an operator's changes to credentials (DESIGN.md, Identity), as pure
//! functions over plain data: may this token enrol this PC with this key, may this PC renew, which groups it gets,
//! what a token body or a group list asks for, and whether a text is a user public key. `db::enrollment` gathers the
//! facts in a transaction and records what is decided here; `issuer` signs and answers. The token rules these build
//! on are `kanade_shared::enroll`'s.

use std::time::Duration;

use kanade_shared::GroupName;
use kanade_shared::api::MAX_CREDENTIAL_GROUPS;
use kanade_shared::enroll::{
    self, DEFAULT_TOKEN_TTL, EnrollRequest, MAX_TOKEN_TTL, MAX_TOKEN_USES, RenewRequest, Token, TokenRefusal,
    TokenState,
};

/// The shortest lifetime a token may be given: one that expires before it reaches the PC is no use.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);

/// A credential's state as the backend keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Recorded, waiting for an operator's approval; nothing issued yet.
    Pending,
    Active,
    /// Revoked by an operator: no renewal, and the key stays in the account's revocations until its credential
    /// would have expired.
    Revoked,
}

impl CredentialStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Active, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What the backend holds of a PC's credential, as the decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub status: CredentialStatus,
    pub public_key: String,
    /// The token that enrolled it.
    pub token_id: String,
    pub groups: Vec<GroupName>,
}

/// A stored token, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub secret_hash: String,
    pub groups: Vec<GroupName>,
    /// Its expiry, uses, revocation, and whether it enrolled the asking PC before (`used_by` holds that PC or
    /// nothing).
    pub state: TokenState,
}

/// Everything an enrolment request is decided on.
#[derive(Debug)]
pub struct EnrolFacts<'a> {
    pub request: &'a EnrollRequest,
    /// The token the request presents, parsed.
    pub presented: &'a Token,
    /// The stored token with the presented id; none if there is none.
    pub token: Option<&'a StoredToken>,
    /// The asking PC's credential, if it has asked before.
    pub held: Option<&'a Held>,
    /// The asking key was revoked (for this PC or another).
    pub key_revoked: bool,
    /// The asking key is another PC's.
    pub key_elsewhere: bool,
    /// `[security] approve_enrollments`.
    pub approve: bool,
    pub now_ms: i64,
}

/// What to do with an enrolment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// Take one of the token's uses and record the PC with this key and `groups`: `pending` when an operator has
    /// to approve, else active with a credential issued now. `replaces` is the revoked key a re-enrolment
    /// replaces.
    Enrol {
        groups: Vec<GroupName>,
        pending: bool,
        replaces: Option<String>,
    },
    /// The PC is active with this key already (its answer was lost, or it was approved since): issue again, without
    /// using the token again.
    IssueAgain,
    /// The PC waits for approval with this key: tell it so again.
    StillPending,
    Refuse(EnrolRefusal),
}

/// Why a PC may not enrol. The messages go to the agent's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolRefusal {
    #[error(transparent)]
    Token(#[from] TokenRefusal),
    #[error("`{0}` is not a user public key (56 characters starting with `U`)")]
    NotAUserKey(String),
    #[error("this key belongs to another PC; make a new key")]
    KeyOfAnotherPc,
    #[error("this key was revoked; make a new key and enrol again")]
    KeyRevoked,
    #[error("this PC is already enrolled with another key; revoke it first (`kanade agent revoke <pc>`)")]
    AlreadyEnrolled,
    #[error(
        "an enrolment of this PC with another key waits for approval; revoke it first (`kanade agent revoke <pc>`)"
    )]
    PendingWithAnotherKey,
    #[error("the credential would carry {0} groups; at most {MAX_CREDENTIAL_GROUPS}")]
    TooManyGroups(usize),
}

/// May `facts.request` enrol, and how.
///
/// - The token must exist and its secret match, whatever else is the case: nothing is told to a guesser.
/// - A PC asking again with the key it is recorded with is answered as its record stands (issued again, or still
///   pending) without using the token again, as long as the token is not revoked and is either the one that
///   enrolled it or still unexpired (an approval may come after the token expired).
/// - A PC active or pending with another key is refused: an operator revokes the old one first. A revoked PC may
///   enrol again with a new key and a token that has not enrolled it before.
/// - Otherwise `check_token` decides, and the PC gets the token's groups, else the ones it asked for.
pub fn decide_enrolment(facts: &EnrolFacts<'_>) -> Enrolment {
    let request = facts.request;
    let token = match facts.token {
        Some(token) if facts.presented.matches(&token.secret_hash) => token,
        _ => return Enrolment::Refuse(TokenRefusal::Unknown.into()),
    };
    if !is_user_public_key(&request.public_key) {
        let shown: String = request.public_key.chars().take(60).collect();
        return Enrolment::Refuse(EnrolRefusal::NotAUserKey(shown));
    }
    if facts.key_elsewhere {
        return Enrolment::Refuse(EnrolRefusal::KeyOfAnotherPc);
    }
    let asking_again = |held: &Held| -> Result<(), EnrolRefusal> {
        if token.state.revoked {
            return Err(TokenRefusal::Revoked.into());
        }
        if token.id != held.token_id && facts.now_ms >= token.state.expires_at_ms {
            return Err(TokenRefusal::Expired.into());
        }
        Ok(())
    };
    let replaces = match facts.held {
        Some(held) if held.public_key == request.public_key => {
            return match held.status {
                CredentialStatus::Active => {
                    asking_again(held).map_or_else(Enrolment::Refuse, |()| Enrolment::IssueAgain)
                }
                CredentialStatus::Pending => {
                    asking_again(held).map_or_else(Enrolment::Refuse, |()| Enrolment::StillPending)
                }
                CredentialStatus::Revoked => Enrolment::Refuse(EnrolRefusal::KeyRevoked),
            };
        }
        Some(held) => match held.status {
            CredentialStatus::Active => return Enrolment::Refuse(EnrolRefusal::AlreadyEnrolled),
            CredentialStatus::Pending => return Enrolment::Refuse(EnrolRefusal::PendingWithAnotherKey),
            CredentialStatus::Revoked => Some(held.public_key.clone()),
        },
        None => None,
    };
    if facts.key_revoked {
        return Enrolment::Refuse(EnrolRefusal::KeyRevoked);
    }
    if let Err(refusal) = enroll::check_token(&token.state, &request.pc_id, facts.now_ms) {
        return Enrolment::Refuse(refusal.into());
    }
    let groups = enroll::granted_groups(&token.groups, &request.groups);
    if groups.len() > MAX_CREDENTIAL_GROUPS {
        return Enrolment::Refuse(EnrolRefusal::TooManyGroups(groups.len()));
    }
    Enrolment::Enrol { groups, pending: facts.approve, replaces }
}

/// Why a PC may not renew. The messages go to the agent's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewRefusal {
    #[error("the renewal names `{asked}` but came on the subject of `{subject}`")]
    WrongSubject { asked: String, subject: String },
    #[error("this PC is not enrolled")]
    NotEnrolled,
    #[error("this PC's enrolment waits for approval")]
    Pending,
    #[error("this PC's credential was revoked; enrol again with a new key and token")]
    Revoked,
    #[error("the key is not the one this PC's credential was issued to; enrol again")]
    OtherKey,
}

/// May the PC named on subject `enroll.renew.<subject_pc>` renew with `request`? The groups its new credential
/// carries if so. Only that PC's credential may publish on its subject (and the backend and CLI), so the subject
/// says who asks; the request must agree, and the key must be the active one.
pub fn decide_renewal(
    subject_pc: &str,
    request: &RenewRequest,
    held: Option<&Held>,
) -> Result<Vec<GroupName>, RenewRefusal> {
    if subject_pc != request.pc_id.as_str() {
        return Err(RenewRefusal::WrongSubject {
            asked: request.pc_id.to_string(),
            subject: subject_pc.chars().take(64).collect(),
        });
    }
    let held = held.ok_or(RenewRefusal::NotEnrolled)?;
    match held.status {
        CredentialStatus::Pending => Err(RenewRefusal::Pending),
        CredentialStatus::Revoked => Err(RenewRefusal::Revoked),
        CredentialStatus::Active if held.public_key != request.public_key => Err(RenewRefusal::OtherKey),
        CredentialStatus::Active => Ok(held.groups.clone()),
    }
}

/// A token's state, as lists show it.
pub fn token_state(revoked: bool, expires_at_ms: i64, uses_left: u32, now_ms: i64) -> &'static str {
    if revoked {
        "revoked"
    } else if now_ms >= expires_at_ms {
        "expired"
    } else if uses_left == 0 {
        "used_up"
    } else {
        "active"
    }
}

/// A token as `POST /api/enroll/tokens` asks for it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOrder {
    pub groups: Vec<GroupName>,
    pub uses: u32,
    pub ttl: Duration,
}

/// Checks what a new token is asked to be: valid groups (at most [`MAX_CREDENTIAL_GROUPS`], sorted, once each),
/// 1 to [`MAX_TOKEN_USES`] uses (default 1), a lifetime from [`MIN_TOKEN_TTL`] to [`MAX_TOKEN_TTL`] (default
/// [`DEFAULT_TOKEN_TTL`]). The error names the field.
pub fn token_order(groups: &[String], uses: Option<u32>, ttl: Option<&str>) -> Result<TokenOrder, String> {
    let groups = checked_groups(groups)?;
    let uses = uses.unwrap_or(1);
    if !(1..=MAX_TOKEN_USES).contains(&uses) {
        return Err(format!("uses: `{uses}` is not between 1 and {MAX_TOKEN_USES}"));
    }
    let ttl = match ttl {
        None => DEFAULT_TOKEN_TTL,
        Some(raw) => {
            let shown: String = raw.chars().take(40).collect();
            let ttl = humantime::parse_duration(raw)
                .map_err(|err| format!("ttl: `{shown}` is not a duration ({err}); write e.g. `24h` or `7d`"))?;
            let show = |d: Duration| humantime::format_duration(d).to_string();
            if ttl < MIN_TOKEN_TTL {
                return Err(format!("ttl: `{shown}` is shorter than the minimum of {}", show(MIN_TOKEN_TTL)));
            }
            if ttl > MAX_TOKEN_TTL {
                return Err(format!("ttl: `{shown}` is longer than the maximum of {}", show(MAX_TOKEN_TTL)));
            }
            ttl
        }
    };
    Ok(TokenOrder { groups, uses, ttl })
}

/// A list of group names as an operator gives it: each valid, at most [`MAX_CREDENTIAL_GROUPS`] distinct ones,
/// returned sorted and once each.
pub fn checked_groups(raw: &[String]) -> Result<Vec<GroupName>, String> {
    let mut groups = Vec::with_capacity(raw.len().min(MAX_CREDENTIAL_GROUPS + 1));
    for (index, name) in raw.iter().enumerate() {
        groups.push(GroupName::new(name.as_str()).map_err(|err| format!("groups[{index}]: {err}"))?);
        // Checked as it grows: a list of a million names is refused without validating all of them.
        if groups.len() > MAX_CREDENTIAL_GROUPS * 4 {
            return Err(format!("groups: {} names; at most {MAX_CREDENTIAL_GROUPS}", raw.len()));
        }
    }
    groups.sort();
    groups.dedup();
    if groups.len() > MAX_CREDENTIAL_GROUPS {
        return Err(format!("groups: {} names; at most {MAX_CREDENTIAL_GROUPS}", groups.len()));
    }
    Ok(groups)
}

/// The pc id in a renewal subject (`enroll.renew.<pc>`), as it came: the decision compares it with the request's.
pub fn renewal_subject_pc(subject: &str) -> Option<&str> {
    let prefix = kanade_shared::subject::ENROLL_RENEW_ALL.strip_suffix('*')?;
    subject.strip_prefix(prefix).filter(|pc| !pc.is_empty() && !pc.contains('.'))
}

/// Whether `key` is an nkey user public key (prefix, base32 and CRC-16 checked by the nkeys crate).
pub fn is_user_public_key(key: &str) -> bool {
    kanade_shared::enroll::is_user_public_key(key)
}

/// An enrolment token's id as a path or cursor gives it: [`enroll::TOKEN_ID_LEN`] characters of lowercase base32.
pub fn token_id(raw: String) -> Result<String, String> {
    let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
    if raw.len() == enroll::TOKEN_ID_LEN && raw.bytes().all(base32) {
        Ok(raw)
    } else {
        let shown: String = raw.chars().take(40).collect();
        Err(format!(
            "enrolment token id `{shown}` is not {} characters of a-z and 2-7 (the part after `kanade_enroll_`)",
            enroll::TOKEN_ID_LEN
        ))
    }
}

#[cfg(test)]
mod tests {
    use kanade_shared::PcId;

    use super::*;

    /// Made by nkeys 0.4 (`KeyPair::new_user`, `new_account`).
    const USER_A: &str = "UC6GJTWHVTWUYC2LNYHNX66KJDTA7GXUJXPVKZV7HUOJTRNVNVUVEIYT";
    const USER_B: &str = "UA4B6JRH4ARBURYQVU6SIKPSEBKH2ZPNUWPES5IXGBSPZLX4UKGO23BJ";
    const ACCOUNT: &str = "ACLC6JFDLSQQOSXS7PS2XZTBSS4SRZFGIAZCLI45Y2GACN5PJ6M7MFSG";

    const NOW: i64 = 1_000_000;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).unwrap()
    }

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    fn presented() -> Token {
        Token::from_random(&[3; 30])
    }

    fn token(groups: &[&str]) -> StoredToken {
        StoredToken {
            id: presented().id,
            secret_hash: presented().secret_hash(),
            groups: groups.iter().map(|n| g(n)).collect(),
            state: TokenState { expires_at_ms: NOW + 1_000, uses_left: 1, revoked: false, used_by: vec![] },
        }
    }

    fn request(key: &str, groups: &[&str]) -> EnrollRequest {
        EnrollRequest {
            token: presented().to_string(),
            pc_id: pc(),
            public_key: key.to_owned(),
            hostname: "PC-1".into(),
            os: "linux".into(),
            groups: groups.iter().map(|n| g(n)).collect(),
        }
    }

    fn held(status: CredentialStatus, key: &str) -> Held {
        Held { status, public_key: key.to_owned(), token_id: presented().id, groups: vec![g("office")] }
    }

    fn decide(request: &EnrollRequest, token: Option<&StoredToken>, held: Option<&Held>) -> Enrolment {
        let presented = presented();
        decide_enrolment(&EnrolFacts {
            request,
            presented: &presented,
            token,
            held,
            key_revoked: false,
            key_elsewhere: false,
            approve: false,
            now_ms: NOW,
        })
    }

    fn refused(why: impl Into<EnrolRefusal>) -> Enrolment {
        Enrolment::Refuse(why.into())
    }

    #[test]
    fn a_valid_token_enrols_a_new_pc_with_its_own_groups_or_the_tokens() {
        let open = token(&[]);
        let wanted = Enrolment::Enrol { groups: vec![g("lab"), g("office")], pending: false, replaces: None };
        assert_eq!(decide(&request(USER_A, &["office", "lab", "lab"]), Some(&open), None), wanted);
        let scoped = token(&["kiosk"]);
        let wanted = Enrolment::Enrol { groups: vec![g("kiosk")], pending: false, replaces: None };
        assert_eq!(decide(&request(USER_A, &["office"]), Some(&scoped), None), wanted);
    }

    #[test]
    fn an_unknown_token_or_a_wrong_secret_tells_nothing_more() {
        let req = request(USER_A, &[]);
        assert_eq!(decide(&req, None, None), refused(TokenRefusal::Unknown));
        let mut wrong = token(&[]);
        wrong.secret_hash = Token::from_random(&[4; 30]).secret_hash();
        // Even for a PC that is enrolled with this very key.
        let active = held(CredentialStatus::Active, USER_A);
        assert_eq!(decide(&req, Some(&wrong), Some(&active)), refused(TokenRefusal::Unknown));
        // A bad key is only named to a holder of a real token.
        assert_eq!(decide(&request("nope", &[]), None, None), refused(TokenRefusal::Unknown));
    }

    #[test]
    fn expired_used_up_and_revoked_tokens_are_refused() {
        let req = request(USER_A, &[]);
        let mut expired = token(&[]);
        expired.state.expires_at_ms = NOW;
        assert_eq!(decide(&req, Some(&expired), None), refused(TokenRefusal::Expired));
        let mut used = token(&[]);
        used.state.uses_left = 0;
        assert_eq!(decide(&req, Some(&used), None), refused(TokenRefusal::UsedUp));
        let mut revoked = token(&[]);
        revoked.state.revoked = true;
        assert_eq!(decide(&req, Some(&revoked), None), refused(TokenRefusal::Revoked));
    }

    #[test]
    fn a_key_that_is_not_a_user_key_is_refused() {
        for bad in ["", "U", ACCOUNT, &USER_A.to_lowercase(), &USER_A.replace('C', "D"), &format!("{USER_A}A")] {
            let shown: String = bad.chars().take(60).collect();
            assert_eq!(decide(&request(bad, &[]), Some(&token(&[])), None), refused(EnrolRefusal::NotAUserKey(shown)));
        }
    }

    #[test]
    fn the_same_pc_and_key_again_is_answered_without_using_the_token() {
        let req = request(USER_A, &[]);
        let mut used = token(&[]);
        used.state.uses_left = 0;
        used.state.used_by = vec![pc()];
        let active = held(CredentialStatus::Active, USER_A);
        assert_eq!(decide(&req, Some(&used), Some(&active)), Enrolment::IssueAgain);
        let pending = held(CredentialStatus::Pending, USER_A);
        assert_eq!(decide(&req, Some(&used), Some(&pending)), Enrolment::StillPending);
        // Approved after its token expired: the token that enrolled it still gets the credential.
        used.state.expires_at_ms = NOW - 1;
        assert_eq!(decide(&req, Some(&used), Some(&active)), Enrolment::IssueAgain);
        // Another token must be valid; a revoked one is no longer honoured at all.
        let mut other = used.clone();
        other.id = "otherid234".into();
        assert_eq!(decide(&req, Some(&other), Some(&active)), refused(TokenRefusal::Expired));
        used.state.revoked = true;
        assert_eq!(decide(&req, Some(&used), Some(&pending)), refused(TokenRefusal::Revoked));
    }

    #[test]
    fn another_key_for_an_enrolled_or_pending_pc_needs_a_revocation_first() {
        let req = request(USER_B, &[]);
        let t = token(&[]);
        assert_eq!(
            decide(&req, Some(&t), Some(&held(CredentialStatus::Active, USER_A))),
            refused(EnrolRefusal::AlreadyEnrolled)
        );
        assert_eq!(
            decide(&req, Some(&t), Some(&held(CredentialStatus::Pending, USER_A))),
            refused(EnrolRefusal::PendingWithAnotherKey)
        );
    }

    #[test]
    fn a_revoked_pc_enrols_again_only_with_a_new_key_and_a_token_that_did_not_enrol_it() {
        let revoked = held(CredentialStatus::Revoked, USER_A);
        let mut t = token(&[]);
        t.state.uses_left = 5;
        assert_eq!(decide(&request(USER_A, &[]), Some(&t), Some(&revoked)), refused(EnrolRefusal::KeyRevoked));
        let wanted = Enrolment::Enrol { groups: vec![], pending: false, replaces: Some(USER_A.to_owned()) };
        assert_eq!(decide(&request(USER_B, &[]), Some(&t), Some(&revoked)), wanted);
        t.state.used_by = vec![pc()];
        assert_eq!(decide(&request(USER_B, &[]), Some(&t), Some(&revoked)), refused(TokenRefusal::AlreadyUsedByThisPc));
    }

    #[test]
    fn a_revoked_key_or_another_pcs_key_is_refused_and_approval_records_pending() {
        let req = request(USER_A, &[]);
        let (presented, t) = (presented(), token(&[]));
        let facts = |key_revoked, key_elsewhere, approve| EnrolFacts {
            request: &req,
            presented: &presented,
            token: Some(&t),
            held: None,
            key_revoked,
            key_elsewhere,
            approve,
            now_ms: NOW,
        };
        assert_eq!(decide_enrolment(&facts(true, false, false)), refused(EnrolRefusal::KeyRevoked));
        assert_eq!(decide_enrolment(&facts(false, true, false)), refused(EnrolRefusal::KeyOfAnotherPc));
        let pending = Enrolment::Enrol { groups: vec![], pending: true, replaces: None };
        assert_eq!(decide_enrolment(&facts(false, false, true)), pending);
    }

    #[test]
    fn too_many_groups_are_refused() {
        let names: Vec<String> = (0..=MAX_CREDENTIAL_GROUPS).map(|i| format!("g{i}")).collect();
        let mut req = request(USER_A, &[]);
        req.groups = names.iter().map(|n| g(n)).collect();
        assert_eq!(
            decide(&req, Some(&token(&[])), None),
            refused(EnrolRefusal::TooManyGroups(MAX_CREDENTIAL_GROUPS + 1))
        );
    }

    #[test]
    fn renewal_needs_its_own_subject_the_active_key_and_no_revocation() {
        let renew = |key: &str| RenewRequest { pc_id: pc(), public_key: key.to_owned() };
        let active = held(CredentialStatus::Active, USER_A);
        assert_eq!(decide_renewal("pc-1", &renew(USER_A), Some(&active)), Ok(vec![g("office")]));
        assert!(matches!(
            decide_renewal("pc-2", &renew(USER_A), Some(&active)),
            Err(RenewRefusal::WrongSubject { .. })
        ));
        assert_eq!(decide_renewal("pc-1", &renew(USER_B), Some(&active)), Err(RenewRefusal::OtherKey));
        assert_eq!(decide_renewal("pc-1", &renew(USER_A), None), Err(RenewRefusal::NotEnrolled));
        let revoked = held(CredentialStatus::Revoked, USER_A);
        assert_eq!(decide_renewal("pc-1", &renew(USER_A), Some(&revoked)), Err(RenewRefusal::Revoked));
        let pending = held(CredentialStatus::Pending, USER_A);
        assert_eq!(decide_renewal("pc-1", &renew(USER_A), Some(&pending)), Err(RenewRefusal::Pending));
    }

    #[test]
    fn renewal_subjects_name_one_pc() {
        assert_eq!(renewal_subject_pc("enroll.renew.pc-1"), Some("pc-1"));
        for bad in ["enroll.renew.", "enroll.renew.a.b", "enroll.request", "x.renew.pc-1"] {
            assert_eq!(renewal_subject_pc(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_ids_are_checked_before_they_reach_a_query() {
        let id = presented().id;
        assert_eq!(token_id(id.clone()), Ok(id));
        for bad in ["", "abc", "ABCDEFGHIJ", "abcdefgh1j", "abcdefghijk", "abcdefghi!"] {
            assert!(token_id(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_orders_are_bounded() {
        let order = token_order(&["office".into(), "lab".into(), "office".into()], None, None).unwrap();
        assert_eq!(order, TokenOrder { groups: vec![g("lab"), g("office")], uses: 1, ttl: DEFAULT_TOKEN_TTL });
        assert_eq!(token_order(&[], Some(MAX_TOKEN_USES), Some("90d")).unwrap().uses, MAX_TOKEN_USES);
        let cases = [
            (token_order(&[], Some(0), None), "uses: `0`"),
            (token_order(&[], Some(MAX_TOKEN_USES + 1), None), "uses: `100001`"),
            (token_order(&[], None, Some("0s")), "ttl: `0s` is shorter"),
            (token_order(&[], None, Some("91d")), "ttl: `91d` is longer"),
            (token_order(&[], None, Some("soon")), "ttl: `soon` is not a duration"),
            (token_order(&["Office".to_owned()], None, None), "groups[0]: group"),
            (token_order(&[String::new()], None, None), "groups[0]"),
        ];
        for (order, wanted) in cases {
            let err = order.unwrap_err();
            assert!(err.starts_with(wanted), "{wanted}: {err}");
        }
    }

    #[test]
    fn group_lists_are_checked_deduplicated_and_bounded() {
        assert_eq!(checked_groups(&["b".into(), "a".into(), "b".into()]).unwrap(), [g("a"), g("b")]);
        assert_eq!(checked_groups(&[]).unwrap(), Vec::<GroupName>::new());
        let many: Vec<String> = (0..=MAX_CREDENTIAL_GROUPS).map(|i| format!("g{i}")).collect();
        assert!(checked_groups(&many).unwrap_err().contains(&format!("at most {MAX_CREDENTIAL_GROUPS}")));
        let huge: Vec<String> = (0..1_000_000).map(|i| format!("g{i}")).collect();
        assert!(checked_groups(&huge).unwrap_err().contains("1000000 names"));
    }

    #[test]
    fn token_states_in_order_of_precedence() {
        assert_eq!(token_state(true, 0, 0, NOW), "revoked");
        assert_eq!(token_state(false, NOW, 1, NOW), "expired");
        assert_eq!(token_state(false, NOW + 1, 0, NOW), "used_up");
        assert_eq!(token_state(false, NOW + 1, 1, NOW), "active");
    }

    #[test]
    fn user_public_keys_are_recognised_by_prefix_and_checksum() {
        assert!(is_user_public_key(USER_A) && is_user_public_key(USER_B));
        assert!(!is_user_public_key(ACCOUNT), "an account key");
        let mut flipped = USER_A.as_bytes().to_vec();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        assert!(!is_user_public_key(std::str::from_utf8(&flipped).unwrap()), "a checksum mismatch");
        assert!(!is_user_public_key(&USER_A[..55]));
        assert!(!is_user_public_key(&format!("{}1", &USER_A[..55])), "not base32");
    }

    #[test]
    fn credential_statuses_read_back() {
        for status in CredentialStatus::ALL {
            assert_eq!(CredentialStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CredentialStatus::parse("Active"), None);
    }
}
