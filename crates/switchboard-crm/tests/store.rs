//! Every store operation on SQLite and PostgreSQL: validation kinds, pagination, exact
//! money, idempotency under concurrency, optimistic concurrency and restarts.

mod common;

use std::collections::HashSet;

use switchboard_crm::model::*;
use switchboard_crm::{CrmConfig, CrmError, CrmStore};

fn contact(name: &str, email: &str) -> NewContact {
    NewContact {
        name: name.into(),
        email: email.into(),
        phone: None,
        company: None,
        position: None,
        status: None,
        tags: None,
        idempotency_key: None,
    }
}

fn opportunity(contact_id: &str, title: &str, value: &str) -> NewOpportunity {
    NewOpportunity {
        contact_id: contact_id.into(),
        title: title.into(),
        value: Amount(value.into()),
        currency: None,
        stage: None,
        probability: None,
        expected_close_date: None,
        idempotency_key: None,
    }
}

fn note(text: &str) -> NewNote {
    NewNote {
        notes: text.into(),
        author: Some("tester".into()),
        idempotency_key: None,
    }
}

fn interaction(contact_id: &str, kind: &str, at: Option<&str>) -> LogInteractionParams {
    LogInteractionParams {
        contact_id: contact_id.into(),
        kind: kind.into(),
        summary: format!("{kind} summary"),
        occurred_at: at.map(str::to_owned),
        idempotency_key: None,
    }
}

fn patch(version: i64) -> ContactPatch {
    ContactPatch {
        version,
        name: None,
        email: None,
        phone: None,
        company: None,
        position: None,
        status: None,
        tags: None,
    }
}

fn kind<T: std::fmt::Debug>(result: Result<T, CrmError>) -> &'static str {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.kind(),
    }
}

fn search(query: &str) -> SearchContactsParams {
    SearchContactsParams {
        query: Some(query.into()),
        ..Default::default()
    }
}

async fn demo_data_matches_the_seed(store: &CrmStore) {
    let page = store
        .search_contacts(&search("tech solutions"))
        .await
        .expect("search");
    assert_eq!(page.total_found, 1);
    let anh = &page.contacts[0];
    assert_eq!(anh.name, "Nguyễn Văn Anh");
    assert_eq!(anh.position.as_deref(), Some("CTO"));
    assert_eq!(anh.status, "active");
    let details = store.get_contact_details(&anh.id).await.expect("details");
    assert_eq!(details.opportunities.len(), 1);
    assert_eq!(details.opportunities[0].title, "AI Consulting Project");
    assert_eq!(details.opportunities[0].value, "50000");
    assert_eq!(details.opportunities[0].stage, "proposal");
    assert_eq!(details.opportunities[0].probability, 75);
    assert_eq!(details.notes.len(), 1);
    assert_eq!(
        details.contact.last_contact_at.as_deref(),
        Some("2025-01-20T09:00:00.000000Z")
    );

    let binh = store
        .search_contacts(&search("innovation hub"))
        .await
        .expect("search");
    assert_eq!(binh.contacts[0].name, "Trần Thị Bình");
    assert_eq!(binh.contacts[0].status, "prospect");

    // Seeding again changes nothing.
    assert!(!store.seed_demo_data().await.expect("reseed"));
    let all = store
        .search_contacts(&SearchContactsParams::default())
        .await
        .expect("all");
    assert_eq!(all.total_found, 2);

    let pipeline = store.pipeline_summary().await.expect("pipeline");
    let rows: Vec<(&str, &str, i64, &str, &str)> = pipeline
        .stages
        .iter()
        .map(|r| {
            (
                r.stage.as_str(),
                r.currency.as_str(),
                r.count,
                r.total_value.as_str(),
                r.weighted_value.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("qualification", "USD", 1, "12000", "3000"),
            ("proposal", "USD", 1, "50000", "37500")
        ]
    );
}

async fn contacts_create_update_and_validate(store: &CrmStore) {
    let created = store
        .create_contact(NewContact {
            phone: Some("+84 1".into()),
            company: Some("Acme".into()),
            tags: Some(vec!["a".into(), "b".into(), "a".into()]),
            status: Some("Prospect".into()),
            ..contact("Lê Văn Cường", "cuong@acme.vn")
        })
        .await
        .expect("create");
    assert_eq!(created.version, 1);
    assert_eq!(created.status, "prospect");
    assert_eq!(created.tags, vec!["a", "b"]);

    assert_eq!(
        kind(
            store
                .create_contact(contact("Other", "CUONG@ACME.VN"))
                .await
        ),
        "conflict"
    );
    assert_eq!(
        kind(store.create_contact(contact("Bad", "not-an-email")).await),
        "invalid_email"
    );
    assert_eq!(
        kind(store.create_contact(contact(" ", "x@y.com")).await),
        "invalid_argument"
    );
    assert_eq!(
        kind(
            store
                .create_contact(NewContact {
                    status: Some("vip".into()),
                    ..contact("S", "s@y.com")
                })
                .await
        ),
        "invalid_status"
    );

    let updated = store
        .update_contact(
            &created.id,
            ContactPatch {
                position: Some("CEO".into()),
                phone: Some(String::new()),
                status: Some("active".into()),
                ..patch(1)
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.position.as_deref(), Some("CEO"));
    assert_eq!(updated.phone, None);
    assert_eq!(updated.company.as_deref(), Some("Acme"));

    match store.update_contact(&created.id, patch(1)).await {
        Err(CrmError::VersionConflict {
            current_version,
            current,
            ..
        }) => {
            assert_eq!(current_version, 2);
            assert_eq!(current["position"], "CEO");
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let other = store
        .create_contact(contact("Other", "other@acme.vn"))
        .await
        .expect("create");
    assert_eq!(
        kind(
            store
                .update_contact(
                    &other.id,
                    ContactPatch {
                        email: Some("Cuong@Acme.vn".into()),
                        ..patch(1)
                    }
                )
                .await
        ),
        "conflict"
    );
    assert_eq!(
        kind(store.update_contact("missing", patch(1)).await),
        "not_found"
    );
    assert_eq!(
        kind(store.get_contact_details("missing").await),
        "not_found"
    );

    let details = store
        .get_contact_details(&created.id)
        .await
        .expect("details");
    assert_eq!(details.contact, updated);
}

async fn search_filters_and_pages(store: &CrmStore) {
    let mut ids = Vec::new();
    for i in 0..25 {
        let c = store
            .create_contact(NewContact {
                company: Some(if i % 2 == 0 { "Even Corp" } else { "Odd Ltd" }.into()),
                status: Some(if i < 5 { "churned" } else { "lead" }.into()),
                ..contact(&format!("Person {i:02}"), &format!("p{i}@example.com"))
            })
            .await
            .expect("create");
        ids.push(c.id);
    }
    store
        .create_contact(contact("Nguyễn Thị Hoa", "hoa@example.vn"))
        .await
        .expect("create");

    // Unicode-aware, case-insensitive free text.
    let hits = store
        .search_contacts(&search("NGUYỄN"))
        .await
        .expect("search");
    assert_eq!(hits.contacts.len(), 1);
    assert_eq!(
        store
            .search_contacts(&search("even corp"))
            .await
            .expect("search")
            .total_found,
        13
    );
    assert_eq!(
        store
            .search_contacts(&search("@example.com"))
            .await
            .expect("search")
            .total_found,
        25
    );
    // LIKE wildcards are literal.
    assert_eq!(
        store
            .search_contacts(&search("%"))
            .await
            .expect("search")
            .total_found,
        0
    );

    let churned = SearchContactsParams {
        status: Some("churned".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .search_contacts(&churned)
            .await
            .expect("search")
            .total_found,
        5
    );

    // Walk all pages: every contact exactly once, in name order.
    let mut seen = Vec::new();
    let mut params = SearchContactsParams {
        query: Some("person".into()),
        limit: Some(10),
        ..Default::default()
    };
    loop {
        let page = store.search_contacts(&params).await.expect("page");
        assert_eq!(page.total_found, 25);
        assert!(page.contacts.len() <= 10);
        seen.extend(page.contacts.iter().map(|c| c.name.clone()));
        match page.next_cursor {
            Some(cursor) => params.cursor = Some(cursor),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("Person {i:02}")).collect();
    assert_eq!(seen, expected);

    // Last-contact filters.
    store
        .log_interaction(interaction(&ids[0], "call", Some("2025-01-10T00:00:00Z")))
        .await
        .expect("log");
    store
        .log_interaction(interaction(&ids[1], "email", Some("2025-03-10T00:00:00Z")))
        .await
        .expect("log");
    let before = SearchContactsParams {
        last_contact_before: Some("2025-02-01".into()),
        ..Default::default()
    };
    let page = store.search_contacts(&before).await.expect("before");
    assert_eq!(
        page.contacts
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    let after = SearchContactsParams {
        last_contact_after: Some("2025-02-01T00:00:00+07:00".into()),
        ..Default::default()
    };
    let page = store.search_contacts(&after).await.expect("after");
    assert_eq!(
        page.contacts
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );

    let bad_cursor = SearchContactsParams {
        cursor: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(store.search_contacts(&bad_cursor).await),
        "invalid_cursor"
    );
    let bad_limit = SearchContactsParams {
        limit: Some(0),
        ..Default::default()
    };
    assert_eq!(
        kind(store.search_contacts(&bad_limit).await),
        "invalid_argument"
    );
    let bad_status = SearchContactsParams {
        status: Some("gold".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(store.search_contacts(&bad_status).await),
        "invalid_status"
    );
    let bad_time = SearchContactsParams {
        last_contact_after: Some("soon".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(store.search_contacts(&bad_time).await),
        "invalid_argument"
    );
}

async fn opportunities_money_stages_and_pipeline(store: &CrmStore) {
    let c = store
        .create_contact(contact("Buyer", "buyer@example.com"))
        .await
        .expect("create");
    let o1 = store
        .create_opportunity(NewOpportunity {
            currency: Some("vnd".into()),
            expected_close_date: Some("2026-03-31".into()),
            ..opportunity(&c.id, "Big", "1234567890123.4567")
        })
        .await
        .expect("create");
    assert_eq!(o1.value, "1234567890123.4567");
    assert_eq!(o1.currency, "VND");
    assert_eq!(o1.stage, "prospecting");
    assert_eq!(o1.probability, 10);
    assert_eq!(o1.expected_close_date.as_deref(), Some("2026-03-31"));
    for (title, value) in [
        ("nine", "9"),
        ("ten", "10"),
        ("hundred", "100"),
        ("cents", "0.1"),
        ("more cents", "0.2"),
    ] {
        store
            .create_opportunity(opportunity(&c.id, title, value))
            .await
            .expect("create");
    }

    assert_eq!(
        kind(
            store
                .create_opportunity(opportunity(&c.id, "neg", "-1"))
                .await
        ),
        "invalid_value"
    );
    assert_eq!(
        kind(
            store
                .create_opportunity(opportunity(&c.id, "nan", "abc"))
                .await
        ),
        "invalid_value"
    );
    assert_eq!(
        kind(
            store
                .create_opportunity(NewOpportunity {
                    currency: Some("ABC".into()),
                    ..opportunity(&c.id, "x", "1")
                })
                .await
        ),
        "invalid_currency"
    );
    assert_eq!(
        kind(
            store
                .create_opportunity(NewOpportunity {
                    stage: Some("closed".into()),
                    ..opportunity(&c.id, "x", "1")
                })
                .await
        ),
        "invalid_stage"
    );
    assert_eq!(
        kind(
            store
                .create_opportunity(NewOpportunity {
                    probability: Some(101),
                    ..opportunity(&c.id, "x", "1")
                })
                .await
        ),
        "invalid_probability"
    );
    assert_eq!(
        kind(
            store
                .create_opportunity(opportunity("missing", "x", "1"))
                .await
        ),
        "not_found"
    );

    // Value filters compare numbers, not text ("9" < "10" < "100").
    let list = |min: Option<&str>, max: Option<&str>| ListOpportunitiesParams {
        min_value: min.map(|v| Amount(v.into())),
        max_value: max.map(|v| Amount(v.into())),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let titles = |page: OpportunityPage| {
        page.opportunities
            .into_iter()
            .map(|o| o.title)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        titles(
            store
                .list_opportunities(&list(Some("9.5"), Some("100")))
                .await
                .expect("list")
        ),
        vec!["ten", "hundred"]
    );
    assert_eq!(
        titles(
            store
                .list_opportunities(&list(None, Some("0.1")))
                .await
                .expect("list")
        ),
        vec!["cents"]
    );
    assert_eq!(
        kind(store.list_opportunities(&list(Some("-5"), None)).await),
        "invalid_value"
    );

    // Pages of 2 cover all 6, oldest first.
    let mut params = ListOpportunitiesParams {
        contact_id: Some(c.id.clone()),
        limit: Some(2),
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list_opportunities(&params).await.expect("page");
        seen.extend(page.opportunities.into_iter().map(|o| o.title));
        match page.next_cursor {
            Some(cursor) => params.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["Big", "nine", "ten", "hundred", "cents", "more cents"]
    );

    let won = store
        .update_opportunity_stage(
            &o1.id,
            StageChange {
                stage: "won".into(),
                probability: None,
            },
        )
        .await
        .expect("stage");
    assert_eq!((won.stage.as_str(), won.probability), ("won", 100));
    let ten_id = store
        .list_opportunities(&list(Some("10"), Some("10")))
        .await
        .expect("list")
        .opportunities[0]
        .id
        .clone();
    let neg = store
        .update_opportunity_stage(
            &ten_id,
            StageChange {
                stage: "negotiation".into(),
                probability: Some(33),
            },
        )
        .await
        .expect("stage");
    assert_eq!((neg.stage.as_str(), neg.probability), ("negotiation", 33));
    assert_eq!(
        kind(
            store
                .update_opportunity_stage(
                    &o1.id,
                    StageChange {
                        stage: "nope".into(),
                        probability: None
                    }
                )
                .await
        ),
        "invalid_stage"
    );
    assert_eq!(
        kind(
            store
                .update_opportunity_stage(
                    "missing",
                    StageChange {
                        stage: "won".into(),
                        probability: None
                    }
                )
                .await
        ),
        "not_found"
    );
    let by_stage = ListOpportunitiesParams {
        stage: Some("won".into()),
        ..Default::default()
    };
    assert_eq!(
        titles(store.list_opportunities(&by_stage).await.expect("list")),
        vec!["Big"]
    );

    // Exact decimals: 0.1 + 0.2 is 0.3, and weights are exact.
    let pipeline = store.pipeline_summary().await.expect("pipeline");
    let row = |stage: &str, currency: &str| {
        pipeline
            .stages
            .iter()
            .find(|r| r.stage == stage && r.currency == currency)
            .cloned()
            .unwrap_or_else(|| panic!("no {stage}/{currency} row in {pipeline:?}"))
    };
    let prospecting = row("prospecting", "USD");
    assert_eq!(prospecting.count, 4);
    assert_eq!(prospecting.total_value, "109.3");
    assert_eq!(prospecting.weighted_value, "10.93");
    let negotiation = row("negotiation", "USD");
    assert_eq!(
        (
            negotiation.total_value.as_str(),
            negotiation.weighted_value.as_str()
        ),
        ("10", "3.3")
    );
    let won = row("won", "VND");
    assert_eq!(won.total_value, "1234567890123.4567");
    assert_eq!(won.weighted_value, "1234567890123.4567");
    let order: Vec<&str> = pipeline.stages.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(order, vec!["prospecting", "negotiation", "won"]);
}

async fn notes_append_and_interactions_move_last_contact(store: &CrmStore) {
    let c = store
        .create_contact(contact("Timeline", "timeline@example.com"))
        .await
        .expect("create");
    let first = store
        .add_contact_note(&c.id, note("first"))
        .await
        .expect("note");
    let second = store
        .add_contact_note(&c.id, note("second"))
        .await
        .expect("note");
    assert_ne!(first.id, second.id);
    assert_eq!(
        kind(store.add_contact_note("missing", note("x")).await),
        "not_found"
    );
    assert_eq!(
        kind(store.add_contact_note(&c.id, note("  ")).await),
        "invalid_argument"
    );

    let late = store
        .log_interaction(interaction(&c.id, "meeting", Some("2025-05-01T10:00:00Z")))
        .await
        .expect("log");
    assert_eq!(late.occurred_at, "2025-05-01T10:00:00.000000Z");
    // An older interaction logged later does not move last_contact_at back.
    store
        .log_interaction(interaction(&c.id, "call", Some("2025-04-01")))
        .await
        .expect("log");
    assert_eq!(
        kind(store.log_interaction(interaction(&c.id, "fax", None)).await),
        "invalid_interaction_kind"
    );
    assert_eq!(
        kind(
            store
                .log_interaction(interaction("missing", "call", None))
                .await
        ),
        "not_found"
    );

    let details = store.get_contact_details(&c.id).await.expect("details");
    let bodies: Vec<&str> = details.notes.iter().map(|n| n.body.as_str()).collect();
    assert!(
        bodies == vec!["second", "first"]
            || (first.created_at == second.created_at && bodies.len() == 2)
    );
    assert_eq!(details.interactions.len(), 2);
    assert_eq!(details.interactions[0].kind, "meeting");
    assert_eq!(
        details.contact.last_contact_at.as_deref(),
        Some("2025-05-01T10:00:00.000000Z")
    );
    // Logging an interaction is not an edit: the version is unchanged.
    assert_eq!(details.contact.version, 1);

    let now = store
        .log_interaction(interaction(&c.id, "email", None))
        .await
        .expect("log");
    let details = store.get_contact_details(&c.id).await.expect("details");
    assert_eq!(details.contact.last_contact_at, Some(now.occurred_at));
}

async fn idempotent_retries_return_the_first_result(store: &CrmStore) {
    let keyed = NewContact {
        idempotency_key: Some("k1".into()),
        ..contact("Once", "once@example.com")
    };
    let a = store.create_contact(keyed.clone()).await.expect("first");
    let b = store.create_contact(keyed.clone()).await.expect("retry");
    assert_eq!(a, b);
    let changed = NewContact {
        name: "Twice".into(),
        ..keyed
    };
    assert_eq!(
        kind(store.create_contact(changed).await),
        "idempotency_key_reused"
    );

    let o = NewOpportunity {
        idempotency_key: Some("k1".into()),
        ..opportunity(&a.id, "Deal", "5")
    };
    assert_eq!(
        store.create_opportunity(o.clone()).await.expect("first"),
        store.create_opportunity(o).await.expect("retry")
    );

    let n = NewNote {
        idempotency_key: Some("k1".into()),
        ..note("hello")
    };
    let n1 = store
        .add_contact_note(&a.id, n.clone())
        .await
        .expect("first");
    assert_eq!(n1, store.add_contact_note(&a.id, n).await.expect("retry"));

    let i = LogInteractionParams {
        idempotency_key: Some("k1".into()),
        ..interaction(&a.id, "call", None)
    };
    assert_eq!(
        store.log_interaction(i.clone()).await.expect("first"),
        store.log_interaction(i).await.expect("retry")
    );

    let details = store.get_contact_details(&a.id).await.expect("details");
    assert_eq!(
        (
            details.opportunities.len(),
            details.notes.len(),
            details.interactions.len()
        ),
        (1, 1, 1)
    );

    // A failed create does not burn its key: the retry after fixing the cause succeeds.
    let dup = NewContact {
        idempotency_key: Some("k2".into()),
        ..contact("Dup", "ONCE@example.com")
    };
    assert_eq!(kind(store.create_contact(dup).await), "conflict");
    let fixed = NewContact {
        idempotency_key: Some("k2".into()),
        ..contact("Dup", "dup@example.com")
    };
    assert!(store.create_contact(fixed).await.is_ok());
}

async fn thirty_two_concurrent_identical_creates_make_one_row(store: &CrmStore) {
    let contacts = futures::future::join_all((0..32).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_contact(NewContact {
                    idempotency_key: Some("burst".into()),
                    ..contact("Burst", "burst@example.com")
                })
                .await
        })
    }))
    .await;
    let ids: HashSet<String> = contacts
        .into_iter()
        .map(|joined| joined.expect("task").expect("create").id)
        .collect();
    assert_eq!(ids.len(), 1, "all 32 callers get the same contact");
    let contact_id = ids.into_iter().next().expect("one id");
    assert_eq!(
        store
            .search_contacts(&search("burst@example.com"))
            .await
            .expect("search")
            .total_found,
        1
    );

    let opportunities = futures::future::join_all((0..32).map(|_| {
        let store = store.clone();
        let contact_id = contact_id.clone();
        tokio::spawn(async move {
            store
                .create_opportunity(NewOpportunity {
                    idempotency_key: Some("burst".into()),
                    ..opportunity(&contact_id, "Burst deal", "99.99")
                })
                .await
        })
    }))
    .await;
    let ids: HashSet<String> = opportunities
        .into_iter()
        .map(|j| j.expect("task").expect("create").id)
        .collect();
    assert_eq!(ids.len(), 1);

    let notes = futures::future::join_all((0..32).map(|_| {
        let store = store.clone();
        let contact_id = contact_id.clone();
        tokio::spawn(async move {
            store
                .add_contact_note(
                    &contact_id,
                    NewNote {
                        idempotency_key: Some("burst".into()),
                        ..note("once")
                    },
                )
                .await
        })
    }))
    .await;
    let ids: HashSet<String> = notes
        .into_iter()
        .map(|j| j.expect("task").expect("note").id)
        .collect();
    assert_eq!(ids.len(), 1);

    let interactions = futures::future::join_all((0..32).map(|_| {
        let store = store.clone();
        let contact_id = contact_id.clone();
        tokio::spawn(async move {
            store
                .log_interaction(LogInteractionParams {
                    idempotency_key: Some("burst".into()),
                    ..interaction(&contact_id, "call", Some("2025-06-01"))
                })
                .await
        })
    }))
    .await;
    let ids: HashSet<String> = interactions
        .into_iter()
        .map(|j| j.expect("task").expect("log").id)
        .collect();
    assert_eq!(ids.len(), 1);

    let details = store
        .get_contact_details(&contact_id)
        .await
        .expect("details");
    assert_eq!(
        (
            details.opportunities.len(),
            details.notes.len(),
            details.interactions.len()
        ),
        (1, 1, 1)
    );
}

async fn concurrent_updates_with_one_version_have_one_winner(store: &CrmStore) {
    let c = store
        .create_contact(contact("Contended", "contended@example.com"))
        .await
        .expect("create");
    let (a, b) = tokio::join!(
        {
            let store = store.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                store
                    .update_contact(
                        &id,
                        ContactPatch {
                            position: Some("A".into()),
                            ..patch(1)
                        },
                    )
                    .await
            })
        },
        {
            let store = store.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                store
                    .update_contact(
                        &id,
                        ContactPatch {
                            position: Some("B".into()),
                            ..patch(1)
                        },
                    )
                    .await
            })
        }
    );
    let results = [a.expect("task"), b.expect("task")];
    let winners: Vec<&Contact> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one update wins: {results:?}");
    let loser = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("one loser");
    match loser {
        CrmError::VersionConflict {
            current_version,
            current,
            ..
        } => {
            assert_eq!(*current_version, 2);
            assert_eq!(current["position"], serde_json::json!(winners[0].position));
        }
        other => panic!("expected version_conflict, got {other:?}"),
    }
    let now = store
        .get_contact_details(&c.id)
        .await
        .expect("details")
        .contact;
    assert_eq!(&now, winners[0]);
}

on_both_engines!(false =>
    contacts_create_update_and_validate,
    search_filters_and_pages,
    opportunities_money_stages_and_pipeline,
    notes_append_and_interactions_move_last_contact,
    idempotent_retries_return_the_first_result,
    thirty_two_concurrent_identical_creates_make_one_row,
    concurrent_updates_with_one_version_have_one_winner,
);

mod demo {
    use crate::on_both_engines;
    on_both_engines!(true => demo_data_matches_the_seed);
    use super::demo_data_matches_the_seed;
}

#[tokio::test]
async fn no_demo_starts_empty() {
    let db = common::TestDb::sqlite(false).await;
    let all = db
        .store
        .search_contacts(&SearchContactsParams::default())
        .await
        .expect("search");
    assert_eq!(all.total_found, 0);
    db.finish().await;
}

#[tokio::test]
async fn restarting_loses_nothing() {
    let db = common::TestDb::sqlite(true).await;
    let c = db
        .store
        .create_contact(NewContact {
            tags: Some(vec!["vip".into()]),
            ..contact("Durable", "durable@example.com")
        })
        .await
        .expect("create");
    let o = db
        .store
        .create_opportunity(opportunity(&c.id, "Durable deal", "1234.50"))
        .await
        .expect("create");
    let n = db
        .store
        .add_contact_note(&c.id, note("remember me"))
        .await
        .expect("note");
    let i = db
        .store
        .log_interaction(interaction(
            &c.id,
            "meeting",
            Some("2025-02-02T02:02:02.123456Z"),
        ))
        .await
        .expect("log");
    let before = db.store.get_contact_details(&c.id).await.expect("details");
    let keyed = NewContact {
        idempotency_key: Some("restart".into()),
        ..contact("Keyed", "keyed@example.com")
    };
    let first = db
        .store
        .create_contact(keyed.clone())
        .await
        .expect("create");
    db.store.close().await;

    let reopened = CrmStore::open(&CrmConfig::new(db.url.clone()))
        .await
        .expect("reopen");
    let after = reopened.get_contact_details(&c.id).await.expect("details");
    assert_eq!(after, before);
    assert_eq!(after.opportunities, vec![o]);
    assert_eq!(after.notes, vec![n]);
    assert_eq!(after.interactions, vec![i]);
    assert_eq!(
        after.contact.last_contact_at.as_deref(),
        Some("2025-02-02T02:02:02.123456Z")
    );
    // Idempotency keys survive a restart too.
    assert_eq!(reopened.create_contact(keyed).await.expect("retry"), first);
    // The demo data was seeded once, on the first start only.
    assert_eq!(
        reopened
            .search_contacts(&search("Tech Solutions"))
            .await
            .expect("search")
            .total_found,
        1
    );
    reopened.close().await;
    drop(db);
}

#[tokio::test]
async fn bare_paths_and_in_memory_urls_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plain.db");
    let store = CrmStore::open(&CrmConfig::new(path.display().to_string()))
        .await
        .expect("open");
    assert_eq!(store.engine(), "sqlite");
    assert!(path.exists());
    store.close().await;

    let memory = CrmStore::open(&CrmConfig::new("sqlite::memory:"))
        .await
        .expect("open");
    assert_eq!(
        memory
            .search_contacts(&SearchContactsParams::default())
            .await
            .expect("search")
            .total_found,
        2
    );
}
