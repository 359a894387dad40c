//! The Agora Chat handlers: each names its call ([`Call`]: rate budget, API name), then
//! runs one pure operation of the app's [`Chat`] under the lock ([`run`]).
//!
//! Rate budgets (Easemob `limitationapi.md`): every user-account API counts against one
//! `users` budget; each group API has its own.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{delete, get, post};

use super::{Call, json_body, run};
use crate::provider::sim::state::Shared;

type Q = Query<HashMap<String, String>>;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/{org}/{app}/users", get(users_list).post(users_register))
        .route(
            "/{org}/{app}/users/{username}",
            get(user_get).put(user_update).delete(user_delete),
        )
        .route(
            "/{org}/{app}/users/{username}/deactivate",
            post(user_deactivate),
        )
        .route(
            "/{org}/{app}/users/{username}/activate",
            post(user_activate),
        )
        .route(
            "/{org}/{app}/chatgroups",
            get(groups_list).post(group_create),
        )
        .route(
            "/{org}/{app}/chatgroups/{group}",
            get(groups_get).put(group_update).delete(group_delete),
        )
        .route(
            "/{org}/{app}/chatgroups/{group}/users",
            get(members_list).post(members_add),
        )
        .route(
            "/{org}/{app}/chatgroups/{group}/users/{members}",
            delete(members_remove),
        )
}

fn call(org: String, app: String, rest: String, budget: &'static str, api: &'static str) -> Call {
    let kind = if rest.starts_with("/chatgroups") {
        "/chatgroups"
    } else {
        "/users"
    };
    Call {
        org,
        app,
        rest,
        kind,
        budget,
        api,
    }
}

/// A user-account call: all share the `users` budget.
fn user_call(org: String, app: String, rest: String, api: &'static str) -> Call {
    call(org, app, rest, "users", api)
}

fn arg<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str)
}

async fn users_list(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let c = user_call(org, app, "/users".into(), "users/list");
    run(&s, c, &headers, |chat, _| {
        chat.users_list(arg(&q, "limit"), arg(&q, "cursor"))
    })
    .await
}

async fn users_register(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let c = user_call(org, app, "/users".into(), "users/register");
    run(&s, c, &headers, |chat, now| {
        chat.register(&json_body(&raw)?, now)
    })
    .await
}

async fn user_get(
    State(s): State<Shared>,
    Path((org, app, username)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let c = user_call(org, app, format!("/users/{username}"), "users/get");
    run(&s, c, &headers, |chat, _| chat.user_get(&username)).await
}

async fn user_update(
    State(s): State<Shared>,
    Path((org, app, username)): Path<(String, String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let c = user_call(org, app, format!("/users/{username}"), "users/update");
    run(&s, c, &headers, |chat, now| {
        chat.set_nickname(&username, &json_body(&raw)?, now)
    })
    .await
}

async fn user_delete(
    State(s): State<Shared>,
    Path((org, app, username)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let c = user_call(org, app, format!("/users/{username}"), "users/delete");
    run(&s, c, &headers, |chat, _| chat.user_delete(&username)).await
}

async fn user_deactivate(
    State(s): State<Shared>,
    Path((org, app, username)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/users/{username}/deactivate");
    let c = user_call(org, app, rest, "users/deactivate");
    run(&s, c, &headers, |chat, now| {
        chat.set_activated(&username, false, now)
    })
    .await
}

async fn user_activate(
    State(s): State<Shared>,
    Path((org, app, username)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/users/{username}/activate");
    let c = user_call(org, app, rest, "users/activate");
    run(&s, c, &headers, |chat, now| {
        chat.set_activated(&username, true, now)
    })
    .await
}

async fn groups_list(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let c = call(
        org,
        app,
        "/chatgroups".into(),
        "chatgroups/list",
        "chatgroups/list",
    );
    run(&s, c, &headers, |chat, _| {
        chat.groups_list(arg(&q, "limit"), arg(&q, "cursor"))
    })
    .await
}

async fn group_create(
    State(s): State<Shared>,
    Path((org, app)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let c = call(
        org,
        app,
        "/chatgroups".into(),
        "chatgroups/create",
        "chatgroups/create",
    );
    run(&s, c, &headers, |chat, now| {
        chat.group_create(&json_body(&raw)?, now)
    })
    .await
}

async fn groups_get(
    State(s): State<Shared>,
    Path((org, app, group)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/chatgroups/{group}");
    let c = call(org, app, rest, "chatgroups/get", "chatgroups/get");
    run(&s, c, &headers, |chat, _| chat.groups_get(&group)).await
}

async fn group_update(
    State(s): State<Shared>,
    Path((org, app, group)): Path<(String, String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let rest = format!("/chatgroups/{group}");
    let c = call(org, app, rest, "chatgroups/update", "chatgroups/update");
    run(&s, c, &headers, |chat, now| {
        chat.group_update(&group, &json_body(&raw)?, now)
    })
    .await
}

async fn group_delete(
    State(s): State<Shared>,
    Path((org, app, group)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/chatgroups/{group}");
    let c = call(org, app, rest, "chatgroups/delete", "chatgroups/delete");
    run(&s, c, &headers, |chat, _| chat.group_delete(&group)).await
}

async fn members_list(
    State(s): State<Shared>,
    Path((org, app, group)): Path<(String, String, String)>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/chatgroups/{group}/users");
    let c = call(
        org,
        app,
        rest,
        "chatgroups/members/list",
        "chatgroups/members/list",
    );
    run(&s, c, &headers, |chat, _| {
        chat.members_list(&group, arg(&q, "pagenum"), arg(&q, "pagesize"))
    })
    .await
}

async fn members_add(
    State(s): State<Shared>,
    Path((org, app, group)): Path<(String, String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let rest = format!("/chatgroups/{group}/users");
    let c = call(
        org,
        app,
        rest,
        "chatgroups/members/add",
        "chatgroups/members/add",
    );
    run(&s, c, &headers, |chat, _| {
        chat.members_add(&group, &json_body(&raw)?)
    })
    .await
}

async fn members_remove(
    State(s): State<Shared>,
    Path((org, app, group, members)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let rest = format!("/chatgroups/{group}/users/{members}");
    let c = call(
        org,
        app,
        rest,
        "chatgroups/members/remove",
        "chatgroups/members/remove",
    );
    run(&s, c, &headers, |chat, _| {
        chat.members_remove(&group, &members)
    })
    .await
}
