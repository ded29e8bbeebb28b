//! Explaining decisions and changing agents and customers over gRPC, as an internal system
//! (workforce management, CRM) would.

use handoff_proto::router::v1::{
    Agent, AgentStatus, AssignHumanRequest, Customer, ExcludedAgent, Exclusion,
    ExplainAssignmentRequest, ListAgentsRequest, RemoveAgentRequest, RuleOutcome,
    SetAgentStatusRequest, StickyReason, TargetOutcome, UpsertAgentRequest, UpsertCustomerRequest,
    router_service_client::RouterServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::support::{Error, Stack, TestResult, on_shift_across_a_zone_reload};

const APP: u64 = 1_400_000_001;

const CONFIG: &str = r#"
[[apps]]
sdk_app_id = 1400000001
fallback_group_id = 9000
[[apps.groups]]
id = 6521
name = "general"
[[apps.groups]]
id = 6523
name = "vip"
[[apps.agents]]
id = "ann@example.com"
groups = [6521, 6523]
capacity = 2
skills = { "language.zh" = 5 }
[[apps.agents]]
id = "bob@example.com"
groups = [6521]
capacity = 2
[[apps.agents]]
id = "cy@example.com"
groups = [6523]
status = "offline"

[[apps.rules]]
name = "vip"
when = 'customer.tier == "vip"'
group = 6523
overflow = [{ group = 6521 }]
"#;

async fn client(stack: &Stack) -> Result<RouterServiceClient<Channel>, Error> {
    Ok(RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?)
}

fn handoff(session: &str, customer: &str) -> AssignHumanRequest {
    AssignHumanRequest {
        sdk_app_id: APP,
        session_id: session.to_owned(),
        client_user_id: customer.to_owned(),
        ..AssignHumanRequest::default()
    }
}

fn explain(session: &str, customer: &str) -> ExplainAssignmentRequest {
    ExplainAssignmentRequest {
        handoff: Some(handoff(session, customer)),
        at: None,
    }
}

#[tokio::test]
async fn explain_agrees_with_assign_and_changes_nothing() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut router = client(&stack).await?;
    for n in 0..3 {
        let session = format!("s-{n}");
        let customer = format!("c-{n}");
        let explained = router
            .explain_assignment(explain(&session, &customer))
            .await?
            .into_inner();
        let again = router
            .explain_assignment(explain(&session, &customer))
            .await?
            .into_inner();
        assert_eq!(explained, again, "explaining twice changes nothing");
        let assigned = router
            .assign_human(handoff(&session, &customer))
            .await?
            .into_inner();
        let predicted = explained.answer.ok_or("no answer")?;
        assert_eq!(predicted.agent_ids, assigned.agent_ids, "round {n}");
        assert_eq!(
            predicted.agent_group_id, assigned.agent_group_id,
            "round {n}"
        );
        assert_eq!(
            predicted.decision.map(|d| d.reserved_agent_id),
            assigned.decision.map(|d| d.reserved_agent_id),
            "round {n}"
        );
    }
    // Where the candidates' load comes from: the three sessions just reserved.
    let explained = router
        .explain_assignment(explain("s-next", "c-next"))
        .await?
        .into_inner();
    let mut sources: Vec<(String, String, i32)> = explained
        .load_sessions
        .iter()
        .map(|s| (s.session_id.clone(), s.agent_id.clone(), s.state))
        .collect();
    sources.sort();
    let provisional = handoff_proto::router::v1::SessionState::Provisional as i32;
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert!(
        sources.iter().all(|(_, _, state)| *state == provisional),
        "{sources:?}"
    );
    let candidates: Vec<&str> = explained
        .candidates
        .iter()
        .map(|c| c.agent_id.as_str())
        .collect();
    for (session, agent, _) in &sources {
        let load = explained.candidates.iter().find(|c| &c.agent_id == agent);
        let at_capacity = explained
            .targets
            .iter()
            .flat_map(|t| &t.excluded)
            .any(|e| &e.agent_id == agent);
        assert!(
            load.is_some() || at_capacity,
            "{session} on {agent}, not among {candidates:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn explain_shows_rules_targets_exclusions_and_scores() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut router = client(&stack).await?;
    router
        .upsert_customer(UpsertCustomerRequest {
            sdk_app_id: APP,
            customer: Some(Customer {
                id: "vip-7".into(),
                tier: "vip".into(),
                owner_agent_id: "bob@example.com".into(),
                ..Customer::default()
            }),
        })
        .await?;
    router
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: APP,
            agent_id: "ann@example.com".into(),
            status: AgentStatus::Away.into(),
            ..SetAgentStatusRequest::default()
        })
        .await?;
    let explained = router
        .explain_assignment(explain("x", "vip-7"))
        .await?
        .into_inner();

    let rules: Vec<(String, RuleOutcome)> = explained
        .rules
        .iter()
        .map(|r| (r.rule.clone(), r.outcome()))
        .collect();
    assert_eq!(rules, [("vip".to_owned(), RuleOutcome::Matched)]);
    assert_eq!(explained.targets.len(), 2);
    let vip = &explained.targets[0];
    assert_eq!(
        (vip.group_id, vip.outcome()),
        (Some(6523), TargetOutcome::NoEligible)
    );
    let reasons: Vec<(String, Exclusion)> = vip
        .excluded
        .iter()
        .map(|e: &ExcludedAgent| (e.agent_id.clone(), e.reason()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("ann@example.com".to_owned(), Exclusion::Away),
            ("cy@example.com".to_owned(), Exclusion::Offline)
        ]
    );
    let general = &explained.targets[1];
    assert_eq!(
        (general.label.as_str(), general.outcome()),
        ("overflow[0]", TargetOutcome::Chosen)
    );
    assert_eq!(explained.candidates.len(), 1);
    assert_eq!(explained.candidates[0].agent_id, "bob@example.com");
    assert_eq!(explained.candidates[0].sticky(), StickyReason::Owner);
    assert_eq!(explained.candidates[0].capacity, 2);
    let answer = explained.answer.ok_or("no answer")?;
    assert_eq!(answer.agent_group_id, Some(6521));
    assert!(
        answer
            .decision
            .is_some_and(|d| d.reason.contains("owner bob@example.com first"))
    );
    Ok(())
}

#[tokio::test]
async fn agents_added_changed_and_removed_take_effect_on_the_next_decision() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut router = client(&stack).await?;
    let zoe = Agent {
        id: "zoe@example.com".into(),
        name: "Zoe".into(),
        group_ids: vec![6521],
        capacity: 3,
        skills: [("language.zh".to_owned(), 4)].into(),
        ..Agent::default()
    };
    let stored = router
        .upsert_agent(UpsertAgentRequest {
            sdk_app_id: APP,
            agent: Some(zoe),
        })
        .await?
        .into_inner()
        .agent
        .ok_or("no agent")?;
    assert_eq!(stored.status(), AgentStatus::Available);
    router
        .remove_agent(RemoveAgentRequest {
            sdk_app_id: APP,
            agent_id: "bob@example.com".into(),
        })
        .await?;
    let answer = router
        .assign_human(handoff("a-1", "c-1"))
        .await?
        .into_inner();
    assert_eq!(answer.agent_ids, ["ann@example.com", "zoe@example.com"]);

    let listed = router
        .list_agents(ListAgentsRequest {
            sdk_app_id: APP,
            group_id: Some(6521),
        })
        .await?
        .into_inner()
        .agents;
    let rows: Vec<(String, u32)> = listed
        .iter()
        .filter_map(|row| {
            row.agent
                .as_ref()
                .map(|agent| (agent.id.clone(), row.active))
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ann@example.com".to_owned(), 1),
            ("zoe@example.com".to_owned(), 0)
        ]
    );
    assert!(listed.iter().all(|row| row.on_shift));
    assert!(listed[0].last_assigned.is_some());
    Ok(())
}

#[tokio::test]
async fn agents_added_at_run_time_follow_a_reloaded_time_zone() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let shifts = on_shift_across_a_zone_reload(CONFIG, stack.grpc, &stack.reloader, 6521).await?;
    assert_eq!(shifts, (true, false), "(on shift before, after)");
    Ok(())
}

#[tokio::test]
async fn management_calls_are_validated() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut router = client(&stack).await?;
    let agent = |id: &str, groups: Vec<u64>, capacity: u32| Agent {
        id: id.into(),
        group_ids: groups,
        capacity,
        ..Agent::default()
    };
    let upserts = [
        (
            agent("not-an-email", vec![6521], 1),
            Code::InvalidArgument,
            "agent.id",
        ),
        (
            agent("x@example.com", vec![77], 1),
            Code::InvalidArgument,
            "group 77 is not defined",
        ),
        (
            agent("x@example.com", vec![], 1),
            Code::InvalidArgument,
            "agent.group_ids",
        ),
        (
            agent("x@example.com", vec![6521], 0),
            Code::InvalidArgument,
            "agent.capacity",
        ),
        (
            Agent {
                attributes: (0..65).map(|n| (format!("k{n}"), "v".to_owned())).collect(),
                ..agent("x@example.com", vec![6521], 1)
            },
            Code::InvalidArgument,
            "agent.attributes: at most 64 entries",
        ),
        (
            Agent {
                skills: [("s".repeat(100_000), 3)].into_iter().collect(),
                ..agent("x@example.com", vec![6521], 1)
            },
            Code::InvalidArgument,
            "agent.skills",
        ),
        (
            Agent {
                shift: Some(handoff_proto::router::v1::Schedule {
                    time_zone: "Mars/Olympus".into(),
                    weekly: vec!["mon 09:00-17:00".into()],
                    closed: vec![],
                }),
                ..agent("x@example.com", vec![6521], 1)
            },
            Code::InvalidArgument,
            "unknown time zone",
        ),
    ];
    for (agent, code, text) in upserts {
        let status = router
            .upsert_agent(UpsertAgentRequest {
                sdk_app_id: APP,
                agent: Some(agent),
            })
            .await
            .err()
            .ok_or("accepted a bad agent")?;
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(text), "{status:?}");
    }
    let status = router
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: APP,
            agent_id: "ghost@example.com".into(),
            status: AgentStatus::Away.into(),
            ..SetAgentStatusRequest::default()
        })
        .await
        .err()
        .ok_or("set the status of a ghost")?;
    assert_eq!(status.code(), Code::NotFound);
    let status = router
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: APP,
            agent_id: "ann@example.com".into(),
            status: 0,
            ..SetAgentStatusRequest::default()
        })
        .await
        .err()
        .ok_or("accepted an unspecified status")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = router
        .upsert_customer(UpsertCustomerRequest {
            sdk_app_id: APP,
            customer: Some(Customer {
                id: "c".into(),
                owner_agent_id: "ghost@example.com".into(),
                ..Customer::default()
            }),
        })
        .await
        .err()
        .ok_or("accepted a ghost owner")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    // A 3 MB attribute value is refused, and the refusal does not echo it back.
    let status = router
        .upsert_customer(UpsertCustomerRequest {
            sdk_app_id: APP,
            customer: Some(Customer {
                id: "c".into(),
                attributes: [("notes".to_owned(), "n".repeat(3 << 20))].into(),
                ..Customer::default()
            }),
        })
        .await
        .err()
        .ok_or("accepted a 3 MB attribute")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("customer.attributes:"),
        "{}",
        status.message()
    );
    assert!(status.message().len() < 200, "{}", status.message().len());
    let status = router
        .list_agents(ListAgentsRequest {
            sdk_app_id: 42,
            group_id: None,
        })
        .await
        .err()
        .ok_or("listed an unknown app")?;
    assert_eq!(status.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn explain_decides_at_the_moment_it_is_asked_about() -> TestResult {
    let config = CONFIG.replacen(
        "[[apps.agents]]",
        "[[apps.groups]]\nid = 6599\nname = \"night desk\"\n\
         [[apps.rules]]\nname = \"night\"\nwhen = 'clock.hour >= 22 || clock.hour < 8'\ngroup = 6599\n\
         [[apps.agents]]\nid = \"owl@example.com\"\ngroups = [6599]\n\
         [[apps.agents]]",
        1,
    );
    let stack = Stack::start(&config).await?;
    let mut router = client(&stack).await?;
    let day = 1_800_000_000 - 1_800_000_000 % 86_400; // a midnight, UTC
    let at = |hour: i64| {
        let mut request = explain("probe", "c-night");
        request.at = Some(prost_types::Timestamp {
            seconds: day + hour * 3600,
            nanos: 0,
        });
        request
    };
    let noon = router.explain_assignment(at(12)).await?.into_inner();
    let night = router.explain_assignment(at(23)).await?.into_inner();
    let rule = |r: &handoff_proto::router::v1::ExplainAssignmentResponse| {
        r.answer
            .as_ref()
            .and_then(|a| a.decision.as_ref())
            .map(|d| d.rule.clone())
    };
    assert_eq!(rule(&night).as_deref(), Some("night"));
    assert_ne!(rule(&noon).as_deref(), Some("night"));
    let bad = router
        .explain_assignment(ExplainAssignmentRequest {
            at: Some(prost_types::Timestamp {
                seconds: day,
                nanos: -1,
            }),
            ..explain("probe", "c-night")
        })
        .await;
    assert_eq!(bad.err().map(|s| s.code()), Some(Code::InvalidArgument));
    Ok(())
}

#[tokio::test]
async fn list_agents_says_where_each_definition_comes_from() -> TestResult {
    use handoff_proto::router::v1::AgentSource;
    let stack = Stack::start(CONFIG).await?;
    let mut router = client(&stack).await?;
    // Bob redefined over the file, zoe added: ann stays the file's.
    for (id, capacity) in [("bob@example.com", 5), ("zoe@example.com", 2)] {
        router
            .upsert_agent(UpsertAgentRequest {
                sdk_app_id: APP,
                agent: Some(Agent {
                    id: id.into(),
                    group_ids: vec![6521],
                    capacity,
                    ..Agent::default()
                }),
            })
            .await?;
    }
    let listed = router
        .list_agents(ListAgentsRequest {
            sdk_app_id: APP,
            group_id: Some(6521),
        })
        .await?
        .into_inner()
        .agents;
    let source = |id: &str| {
        listed
            .iter()
            .find(|row| row.agent.as_ref().is_some_and(|agent| agent.id == id))
            .map(|row| row.source())
    };
    assert_eq!(source("ann@example.com"), Some(AgentSource::File));
    assert_eq!(
        source("bob@example.com"),
        Some(AgentSource::RuntimeOverFile)
    );
    assert_eq!(source("zoe@example.com"), Some(AgentSource::Runtime));
    Ok(())
}

/// GetStatus says when the running config was loaded, and a refused reload with its error:
/// what an operator asks after editing the file.
#[tokio::test]
async fn get_status_shows_the_config_and_a_refused_reload() -> TestResult {
    use handoff_proto::router::v1::GetStatusRequest;
    let dir = crate::support::Scratch::new("status")?;
    let path = dir.join("handoff.toml");
    std::fs::write(&path, crate::traces::memory_config())?;
    let (process, line) = crate::traces::spawn(
        env!("CARGO_BIN_EXE_handoff-router"),
        &path,
        &crate::traces::own_ports(&[]),
    )?;
    let addr = crate::traces::field(&line, "router")?;
    let mut router =
        handoff_proto::router::v1::router_service_client::RouterServiceClient::connect(format!(
            "http://{addr}"
        ))
        .await?;
    let before = router.get_status(GetStatusRequest {}).await?.into_inner();
    assert!(before.config_loaded.is_some() && before.last_refused.is_none());
    assert!(before.store_reachable, "{}", before.store_error);

    // An agent in a group the app lacks: refused, the running config stays.
    let bad = crate::traces::memory_config().replacen("groups = [6521]", "groups = [4242]", 1);
    std::fs::write(&path, bad)?;
    std::process::Command::new("kill")
        .args(["-HUP", &process.id().to_string()])
        .status()?;
    let mut refused = None;
    for _ in 0..100 {
        refused = router
            .get_status(GetStatusRequest {})
            .await?
            .into_inner()
            .last_refused;
        if refused.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = refused.ok_or("the refused reload never showed")?;
    assert!(refused.at.is_some());
    assert!(refused.error.contains("group 4242"), "{}", refused.error);
    Ok(())
}
