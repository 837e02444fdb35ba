use member_portal::service::{accounts, passwords};

use crate::harness::*;

#[tokio::test]
async fn history_pages_newest_first_by_cursor_and_filters_by_type() {
    let h = Harness::new().await;
    let user = h.member().await;
    for i in 0..15 {
        h.earn(user, 10, &format!("O{i}")).await.unwrap();
        if i % 3 == 0 {
            h.spend(user, 5, &format!("P{i}")).await.unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = h.s.points.history(user, None, cursor, 8).await.unwrap();
        seen.extend(items.iter().map(|t| t.id));
        match next {
            Some(c) => {
                assert_eq!(items.len(), 8);
                cursor = Some(c);
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    let (uses, next) =
        h.s.points
            .history(
                user,
                Some(member_portal::domain::TransactionType::Use),
                None,
                100,
            )
            .await
            .unwrap();
    assert_eq!(uses.len(), 5);
    assert!(next.is_none());
    assert!(
        uses.iter()
            .all(|t| t.transaction_type == "use" && t.points_change == -5)
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_checked() {
    let h = Harness::new().await;
    let key = accounts::create_api_key(&h.s.ctx, "order system", None)
        .await
        .unwrap();
    assert!(key.starts_with("mp_") && key.len() == 67, "{key}");
    let stored: String = sqlx::query_scalar("select key_hash from api_keys")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_ne!(stored, key);
    assert_eq!(stored, accounts::api_key_hash(&key));
    let id = accounts::authenticate_api_key(&h.s.ctx, &key, accounts::Scope::Read)
        .await
        .unwrap();
    assert_eq!(
        h.count(&format!(
            "select count(*) from api_keys where id = {id} and last_used_at is not null"
        ))
        .await,
        1
    );
    let e = accounts::authenticate_api_key(&h.s.ctx, "mp_wrong", accounts::Scope::Read)
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("UNAUTHORIZED", 401));
    sqlx::query("update api_keys set revoked_at = now()")
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(
        accounts::authenticate_api_key(&h.s.ctx, &key, accounts::Scope::Read)
            .await
            .unwrap_err()
            .code(),
        "UNAUTHORIZED"
    );
}

#[tokio::test]
async fn staff_accounts_have_the_staff_role_and_an_argon2id_hash() {
    let h = Harness::new().await;
    let id = accounts::create_staff(&h.s.ctx, "Boss@Example.com", "long enough pw", None)
        .await
        .unwrap();
    let (role, hash): (String, String) =
        sqlx::query_as("select role, password_hash from users where id = $1")
            .bind(id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(role, "staff");
    assert!(hash.starts_with("$argon2id$"));
    assert!(
        passwords::verify_password("long enough pw".into(), hash)
            .await
            .unwrap()
    );
    assert_eq!(
        accounts::create_staff(&h.s.ctx, "boss@example.com", "long enough pw", None)
            .await
            .unwrap_err()
            .code(),
        "EMAIL_TAKEN"
    );
    assert_eq!(
        accounts::create_staff(&h.s.ctx, "x@example.com", "short", None)
            .await
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_password_checks_runs_at_most_one_argon2_per_core_at_once() {
    let hash = passwords::hash_password("correct horse".into())
        .await
        .unwrap();
    let checks: Vec<_> = (0..12)
        .map(|i| {
            let hash = hash.clone();
            tokio::spawn(passwords::verify_password(format!("guess {i}"), hash))
        })
        .collect();
    for c in checks {
        assert!(
            !c.await.unwrap().unwrap(),
            "a wrong password never verifies"
        );
    }
    let peak = passwords::argon2_peak();
    assert!(
        (1..=passwords::argon2_permits()).contains(&peak),
        "{peak} argon2 computations at once (each holds 19 MiB)"
    );
}
