//! What a WeCom `errcode` means for understudy: a freeze, a rate limit, a token to
//! refresh, a configuration to fix, or nothing we know.
//!
//! WeCom answers HTTP 200 with `{"errcode": N, "errmsg": "…"}` for every outcome. The
//! meanings below come from WeCom's global error-code page ("全局错误码",
//! developer.work.weixin.qq.com/document/path/90313) as copied, with its text, into
//! go-workwx `errcodes/mod.go` (generated from that page, crawled 2023-08-20) and WxJava
//! `WxCpErrorMsgEnum`; rate limits also from "访问频率限制" (document/path/90454).
//! Each entry quotes the source's own words.
//!
//! Rules the table keeps:
//! - Only a code whose documented meaning is that the corp or its app can no longer be
//!   used is freeze evidence. A code we cannot confirm from a source is `Unknown`, never
//!   a freeze (50006 and 60031 were asked for as freeze codes; neither appears on the
//!   error-code page, so both are `Unknown`).
//! - The same number means other things on Official Accounts (50002 there is "用户受限"
//!   — an API ban; here it is a member outside the app's scope). This table is WeCom's
//!   only.

use std::time::Duration;

use super::super::ProviderError;

pub use crate::provider::cgibin::Meaning;

/// The meaning of `errcode`.
pub fn meaning(errcode: i64) -> Meaning {
    use Meaning::*;
    match errcode {
        0 => Ok,
        // "系统繁忙 … 服务器暂不可用，建议稍候重试。建议重试次数不超过3次。"
        -1 => Transient,
        // "不合法的secret参数 … 3) 应用已经停用" is listed among its causes, but so are a
        // wrong or reset secret; alone it is not evidence of a freeze.
        40001 => BadSecret,
        // "不合法的access_token … access_token需要在有效期内调用，失效了就是会提示token非法。
        // 可以重新获取一次access_token解决"
        40014 => RefreshToken,
        // "access_token已过期 … 需要重新获取一次"
        42001 => RefreshToken,
        // "接口调用超过限制 … 频率拦截时长一般与调用的限制时长相同"
        45009 => RateLimited,
        // "接口并发调用超过限制"
        45033 => RateLimited,
        // "应用已禁用 … 应用禁用之后，将无法再调用api"
        50003 => Frozen("50003 应用已禁用: the app is disabled and can call no API"),
        // "接口权限被收回 … 由于企业长时间未使用应用，接口权限被收回，需企业管理员重新启用"
        48006 => Frozen(
            "48006 接口权限被收回: WeCom revoked the app's API permission; an administrator must enable it again",
        ),
        // "企业账号异常"
        40141 => Frozen("40141 企业账号异常: WeCom reports the corp account as abnormal"),
        // "应用试用到期" / "应用服务到期" / "应用付费可用人数超限"
        40136 => Frozen("40136 应用试用到期: the app's trial has expired"),
        40137 => Frozen("40137 应用服务到期: the app's service period has expired"),
        40138 => Frozen("40138 应用付费可用人数超限: the app's paid seats are exceeded"),
        // "付费应用已过期" / "付费应用超过最大使用人数"
        90302 => Frozen("90302 付费应用已过期: the paid app has expired"),
        90303 => Frozen("90303 付费应用超过最大使用人数: the paid app's user limit is exceeded"),
        // "API接口无权限调用": writing contacts needs the contacts-sync (通讯录同步)
        // secret; customer-contact APIs need the customer-contact secret.
        48002 => Misconfigured(
            "48002 API接口无权限调用: this secret may not call this API; use the contacts-sync (通讯录同步) secret for contacts and the customer-contact (客户联系) secret for corp tags, and enable API editing for it",
        ),
        // "指定的成员/部门/标签参数无权限 … 不在应用的可见范围之内 … 没有编辑权限"
        60011 => Misconfigured(
            "60011 指定的成员/部门/标签参数无权限: the secret has no edit rights on this member, department or tag; give the contacts-sync app edit permission over the whole directory",
        ),
        // "不安全的访问IP … 请确认该IP是本企业服务器IP，并已经配置到应用详情的“企业可信IP”"
        60020 => Misconfigured(
            "60020 不安全的访问IP: the operator's egress IP is not a trusted IP of this app; add it under the app's 企业可信IP in the admin console (it takes effect after a minute)",
        ),
        // "无权限操作指定的应用": the token belongs to another app.
        301002 => Misconfigured(
            "301002 无权限操作指定的应用: the secret belongs to another app than the one this call names; check the Secret",
        ),
        // "不合法的CorpID … 在 web管理端-设置 可查看"
        40013 => Misconfigured(
            "40013 不合法的CorpID: the corpId is wrong; copy it from the admin console (My Company → Corp ID)",
        ),
        // "成员不在权限范围"
        50002 => Misconfigured(
            "50002 成员不在权限范围: the member is outside the app's visible scope; widen the app's scope",
        ),
        // "分页查询的游标无效"
        50100 => CursorExpired,
        // "UserID不存在" / "部门ID不存在" / "无效的部门id" / "不合法的标签ID … 指定的标签ID不存在"
        60111 | 60003 | 60123 | 40068 => NotFound,
        // "UserID已存在", "手机号码已存在", "邮箱已存在", "部门已存在", "不合法的标签名字 …
        // 标签名字已经存在", "部门名称含有非法字符", "成员name参数不合法", "非法部门名字",
        // "部门下存在成员", "部门下存在子部门", "无效的UserID", "不合法的参数"
        60102 | 60104 | 60106 | 60008 | 40071 | 60009 | 60112 | 60125 | 60005 | 60006 | 40003
        | 40058 => Rejected,
        _ => Unknown,
    }
}

/// How long to wait after a rate limit: WeCom's per-minute blocks clear "1分钟后"
/// ("频率拦截时长一般与调用的限制时长相同"), so a minute.
pub const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);

/// The [`ProviderError`] for a non-zero errcode (`errmsg` is WeCom's text, kept for the
/// record). `Ok`, `RefreshToken` and `BadSecret` on an API call are the caller's to
/// handle first; here they become errors for a call that was already retried.
pub fn to_error(errcode: i64, errmsg: &str) -> ProviderError {
    let said = format!("WeCom errcode {errcode}: {errmsg}");
    match meaning(errcode) {
        Meaning::Frozen(why) => ProviderError::AccountFrozen {
            reason: format!("{why} ({said})"),
        },
        Meaning::RateLimited => ProviderError::RateLimited {
            retry_after: RATE_LIMIT_BACKOFF,
        },
        Meaning::Transient => ProviderError::Unavailable(said),
        Meaning::Misconfigured(fix) => ProviderError::Misconfigured(format!("{fix} ({said})")),
        Meaning::BadSecret => ProviderError::Unauthorized(format!(
            "40001 不合法的secret参数: the corp refused the secret (wrong, reset, or its app disabled); check the credentials Secret ({said})"
        )),
        Meaning::RefreshToken => {
            ProviderError::Unauthorized(format!("the access token was refused again ({said})"))
        }
        Meaning::CursorExpired => ProviderError::CursorExpired(said),
        Meaning::NotFound => ProviderError::NotFound(said),
        Meaning::Rejected => ProviderError::Rejected(said),
        Meaning::Ok | Meaning::Unknown => ProviderError::Protocol(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::signal::ErrorEvidence;

    fn is_freeze_evidence(err: &ProviderError) -> bool {
        matches!(ErrorEvidence::from(err), ErrorEvidence::Stopped { .. })
    }

    #[test]
    fn the_freeze_codes_are_evidence_and_nothing_else_is() {
        for code in [50003, 48006, 40141, 40136, 40137, 40138, 90302, 90303] {
            assert!(matches!(meaning(code), Meaning::Frozen(_)), "{code}");
            assert!(
                matches!(to_error(code, "x"), ProviderError::AccountFrozen { .. }),
                "{code}"
            );
            assert!(is_freeze_evidence(&to_error(code, "x")), "{code}");
        }
        // Rate limits, busy, configuration, unconfirmed codes: never a freeze.
        for code in [
            45009, 45033, -1, 48002, 60011, 60020, 301002, 40013, 50002, 40001, 40014, 42001,
            50006, 60031, 50100, 60111, 60102, 123456,
        ] {
            assert!(
                !is_freeze_evidence(&to_error(code, "x")),
                "{code} must never count as a freeze"
            );
        }
    }

    #[test]
    fn rate_limits_back_off_a_minute_and_are_transient() {
        for code in [45009, 45033] {
            let err = to_error(code, "api freq out of limit");
            assert_eq!(
                err,
                ProviderError::RateLimited {
                    retry_after: Duration::from_secs(60)
                }
            );
            assert!(err.is_transient());
        }
        assert!(to_error(-1, "system busy").is_transient());
    }

    #[test]
    fn configuration_problems_say_what_to_fix() {
        let ip = to_error(60020, "not allow to access from your ip");
        assert!(ip.to_string().contains("企业可信IP"), "{ip}");
        assert!(ip.to_string().contains("not allow to access"), "{ip}");
        let perm = to_error(48002, "api forbidden").to_string();
        assert!(perm.contains("通讯录同步"), "{perm}");
        assert!(!ip.is_transient());
    }

    #[test]
    fn tokens_are_refreshed_and_cursors_restart() {
        assert_eq!(meaning(40014), Meaning::RefreshToken);
        assert_eq!(meaning(42001), Meaning::RefreshToken);
        assert_eq!(meaning(40001), Meaning::BadSecret);
        assert!(matches!(
            to_error(50100, "invalid cursor"),
            ProviderError::CursorExpired(_)
        ));
        assert!(matches!(
            to_error(60111, "userid not found"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            to_error(60102, "userid existed"),
            ProviderError::Rejected(_)
        ));
        assert!(matches!(to_error(99999, "?"), ProviderError::Protocol(_)));
    }
}

#[cfg(test)]
mod runbook_tests {
    use super::*;

    /// `runbooks/wecom-errcodes.md` says what each code does; the code must agree.
    #[test]
    fn the_runbook_table_is_the_code_table() {
        let page = include_str!("../../../runbooks/wecom-errcodes.md");
        let rows = crate::provider::cgibin::runbook_rows(page, meaning);
        assert!(rows >= 30, "only {rows} rows read from the runbook table");
        // Every code the table in code knows is on the page.
        for code in [
            -1, 40001, 40014, 42001, 45009, 45033, 50003, 48006, 40141, 40136, 40137, 40138, 90302,
            90303, 48002, 60011, 60020, 301002, 40013, 50002, 50100, 60111, 60003, 60123, 40068,
            60102, 60104, 60106, 60008, 40071, 60009, 60112, 60125, 60005, 60006, 40003, 40058,
        ] {
            assert!(
                page.contains(&format!("| {code} |")),
                "errcode {code} is missing from the runbook"
            );
        }
    }
}
