//! Concurrent writers: no lost update, exactly one winner per precondition.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::sample_context;

backend_tests! {
    async fn fifty_concurrent_appends_lose_nothing(srv) {
        let key = srv.agent("inj", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap().to_string();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let request = srv.request(Method::POST, &format!("/context/{id}/messages"), Some(&key))
                .json(&json!({"messages": [{"role": "user", "message": format!("m{i}")}]}));
            tasks.push(tokio::spawn(async move { request.send().await.unwrap().status() }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK);
        }
        let stored = srv.stored(&id).await.body;
        let history = stored["session"]["history"].as_array().unwrap();
        assert_eq!(history.len(), 52);
        let got: HashSet<&str> = history[2..].iter().map(|m| m["message"].as_str().unwrap()).collect();
        assert_eq!(got, (0..50).map(|i| format!("m{i}")).collect::<HashSet<_>>().iter().map(String::as_str).collect());
        assert_eq!(stored["version"], 51);
    }

    async fn same_if_match_exactly_one_wins(srv) {
        let key = srv.agent("w", &["writer"]).await;
        for round in 0..5 {
            let created = srv.create_context(&key, sample_context()).await;
            let path = format!("/context/{}", created["context_id"].as_str().unwrap());
            let a = srv.request(Method::PUT, &path, Some(&key)).header("if-match", "\"v1\"")
                .json(&json!({"metadata": {"writer": "a"}, "session": {"history": []}}));
            let b = srv.request(Method::PATCH, &path, Some(&key)).header("if-match", "\"v1\"")
                .json(&json!({"metadata": {"writer": "b"}}));
            let (ra, rb) = tokio::join!(srv.send(a), srv.send(b));
            let mut statuses = vec![ra.status, rb.status];
            statuses.sort();
            assert_eq!(statuses, vec![StatusCode::OK, StatusCode::PRECONDITION_FAILED], "round {round}");
            let winner = if ra.status == StatusCode::OK { "a" } else { "b" };
            let stored = srv.call(Method::GET, &path, Some(&key), None).await.body;
            assert_eq!(stored["version"], 2);
            assert_eq!(stored["metadata"]["writer"], winner);
        }
    }
}
