//! What an Official Account (公众号) `errcode` means for understudy. Its own table: the
//! same number means other things on WeCom (50002 is an API ban here and a member outside
//! the app's scope there; 48006 is a refused quota reset here and a revoked permission
//! there).
//!
//! Sources, cited per entry:
//! - [MP] WxJava `WxMpErrorMsgEnum.java` — "公众平台全局返回码", copied with its text from
//!   Tencent's Global_Return_Code page;
//! - [OPEN] WxJava `WxOpenErrorMsgEnum.java` (the English errmsgs);
//! - [PY] wechatpy `wechatpy/constants.py` (`WeChatErrorCode`) and `client/base.py`
//!   (40001/40014/42001 refresh the token; 45009 is `APILimitedException`);
//! - [LIMITS] Tencent "接口调用频次限制说明" (doc/service/Message_Management/API_Call_Limits);
//! - [TAGS] Tencent "用户标签管理" (user tag management) error table.
//!
//! Rules the table keeps: only a code whose documented meaning is that the account (or
//! its API access) was blocked by the platform is freeze evidence; a code we cannot
//! confirm from a source is `Unknown`, never a freeze.

use std::time::Duration;

use crate::provider::ProviderError;
use crate::provider::cgibin::Meaning;

/// The meaning of `errcode`.
pub fn meaning(errcode: i64) -> Meaning {
    use Meaning::*;
    match errcode {
        0 => Ok,
        // [MP] "系统繁忙，此时请开发者稍候再试"
        -1 => Transient,
        // [MP] "获取 access_token 时 AppSecret 错误，或者 access_token 无效"; [PY] refreshes
        // the token on it.
        40001 => BadSecret,
        // [PY] INVALID_APP_SECRET; [OPEN] "invalid appsecret" (only the token call answers it).
        40125 => BadSecret,
        // [MP] "不合法的 access_token" / "access_token 超时"; [PY] refreshes on both.
        40014 | 42001 => RefreshToken,
        // [MP] "接口调用超过限制" — the day's quota of this API ([LIMITS]: "reach max api
        // daily quota limit"); it comes back at midnight or with clear_quota.
        45009 => RateLimited,
        // [MP] "API 调用太频繁，请稍候再试" ("api minute-quota reach limit, must slower,
        // retry next minute").
        45011 => RateLimited,
        // [MP] "api 接口被封禁，请登录 mp.weixin.qq.com 查看详情" ("api forbidden for
        // irregularities").
        48004 => Frozen(
            "48004 api 接口被封禁: the platform banned this account's API access after a violation; see mp.weixin.qq.com",
        ),
        // [MP] "用户受限，可能是违规后接口被封禁"; [OPEN] newer text "用户受限，可能是用户帐号被冻结或注销".
        50002 => Frozen(
            "50002 用户受限: the account is restricted (its API banned after a violation, or the account frozen or closed)",
        ),
        // [PY] PUBLISH_LIMITED = 53500, "发布功能被封禁". Only wechatpy's constants name it
        // (no Tencent page found): kept as freeze evidence because it is a platform ban,
        // but understudy calls no publishing API, so it can only come from a proxy that
        // passes other answers through.
        53500 => Frozen(
            "53500 发布功能被封禁: the platform banned this account's publishing (named by wechatpy's constants; no Tencent page confirms it)",
        ),
        // [MP] "api 功能未授权，请确认公众号已获得该接口，可以在公众平台官网 - 开发者中心页中查看接口权限"
        48001 => Misconfigured(
            "48001 api 功能未授权: this account has no permission for this API (custom menus, materials and tags need a verified account, 已认证); check 设置与开发 → 接口权限 at mp.weixin.qq.com",
        ),
        // [MP] "用户未授权该 api"
        50001 => Misconfigured(
            "50001 用户未授权该 api: the account has not been granted this API; check 接口权限 at mp.weixin.qq.com",
        ),
        // [OPEN] "invalid ip, not in whitelist": the caller's IP is not on the account's
        // IP allow-list; 61004 is the older "access clientip is not registered".
        40164 | 61004 => Misconfigured(
            "40164 IP not in the allow-list: add the operator's egress IP to 设置与开发 → 基本配置 → IP白名单 at mp.weixin.qq.com",
        ),
        // [MP] "不合法的 AppID，请开发者检查 AppID 的正确性"
        40013 => Misconfigured(
            "40013 不合法的 AppID: the appId is wrong; copy it from 设置与开发 → 基本配置 at mp.weixin.qq.com",
        ),
        // [MP] "不合法的凭证类型" (grant_type).
        40002 => Misconfigured("40002 不合法的凭证类型: the token call's grant_type was refused"),
        // [MP] "不存在的菜单数据"; "不合法的媒体文件 id"; [TAGS] "非法的tag_id".
        46003 | 40007 | 45159 => NotFound,
        // [MP] "api 禁止删除被自动回复和自定义菜单引用的素材"; [TAGS] 45056 too many tags,
        // 45057 a tag with over 100,000 followers cannot be deleted, 45058 the system tags
        // 0/1/2 cannot be changed, 45059 a follower with 20 tags, 45157 name taken or
        // invalid, 45158 name over 30 bytes, 40032 more than 50 openids, 40003 an invalid
        // openid, 49003 an openid of another account; [MP] 40016/40017/40018 invalid
        // menu buttons (count, type, name length).
        48005 | 45056 | 45057 | 45058 | 45059 | 45157 | 45158 | 40032 | 40003 | 49003 | 40016
        | 40017 | 40018 => Rejected,
        // [MP] 48006 "api 禁止清零调用次数，因为清零次数达到上限": only clear_quota answers
        // it, which understudy never calls (on WeCom the same number is freeze evidence).
        _ => Unknown,
    }
}

/// After a daily quota (45009): it comes back at midnight; try again in an hour (a
/// `clear_quota` by the account's administrator lets the next try through).
pub const DAILY_QUOTA_BACKOFF: Duration = Duration::from_secs(3600);
/// After the minute limit (45011): "retry next minute".
pub const MINUTE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);

/// The [`ProviderError`] for a non-zero errcode (`errmsg` is the platform's text, kept
/// for the record).
pub fn to_error(errcode: i64, errmsg: &str) -> ProviderError {
    let said = format!("Official Account errcode {errcode}: {errmsg}");
    match meaning(errcode) {
        Meaning::Frozen(why) => ProviderError::AccountFrozen {
            reason: format!("{why} ({said})"),
        },
        Meaning::RateLimited => ProviderError::RateLimited {
            retry_after: if errcode == 45009 {
                DAILY_QUOTA_BACKOFF
            } else {
                MINUTE_LIMIT_BACKOFF
            },
        },
        Meaning::Transient => ProviderError::Unavailable(said),
        Meaning::Misconfigured(fix) => ProviderError::Misconfigured(format!("{fix} ({said})")),
        Meaning::BadSecret => ProviderError::Unauthorized(format!(
            "the account refused the AppSecret (wrong or reset); check the credentials Secret ({said})"
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

/// The freeze codes, for tests and the runbook.
pub const FREEZE_CODES: [i64; 3] = [48004, 50002, 53500];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::signal::ErrorEvidence;

    fn is_freeze_evidence(err: &ProviderError) -> bool {
        matches!(ErrorEvidence::from(err), ErrorEvidence::Stopped { .. })
    }

    #[test]
    fn the_freeze_codes_are_evidence_and_nothing_else_is() {
        for code in FREEZE_CODES {
            assert!(is_freeze_evidence(&to_error(code, "x")), "{code}");
        }
        // Quotas, busy, configuration, WeCom's freeze codes, unknown codes: never.
        for code in [
            45009, 45011, -1, 48001, 50001, 40164, 61004, 40013, 40001, 40125, 40014, 42001, 48006,
            50003, 40141, 46003, 40007, 45157, 89503, 123456,
        ] {
            assert!(
                !is_freeze_evidence(&to_error(code, "x")),
                "{code} must never count as a freeze"
            );
        }
    }

    #[test]
    fn quotas_back_off_for_their_window() {
        assert_eq!(
            to_error(45009, "reach max api daily quota limit"),
            ProviderError::RateLimited {
                retry_after: DAILY_QUOTA_BACKOFF
            }
        );
        assert_eq!(
            to_error(45011, "api minute-quota reach limit"),
            ProviderError::RateLimited {
                retry_after: MINUTE_LIMIT_BACKOFF
            }
        );
        assert!(to_error(45009, "x").is_transient());
    }

    #[test]
    fn the_same_number_means_what_it_means_here() {
        // 50002 is a member outside the app's scope on WeCom, an account ban here.
        assert!(matches!(meaning(50002), Meaning::Frozen(_)));
        assert!(matches!(
            crate::provider::wecom::errcode::meaning(50002),
            Meaning::Misconfigured(_)
        ));
        // 48006 is freeze evidence on WeCom, a refused quota reset here.
        assert_eq!(meaning(48006), Meaning::Unknown);
        let ip = to_error(40164, "invalid ip 1.2.3.4, not in whitelist").to_string();
        assert!(ip.contains("IP白名单") && ip.contains("1.2.3.4"), "{ip}");
    }
}

#[cfg(test)]
mod runbook_tests {
    use super::*;

    /// `runbooks/officialaccount-errcodes.md` says what each code does; the code agrees.
    #[test]
    fn the_runbook_table_is_the_code_table() {
        let page = include_str!("../../../runbooks/officialaccount-errcodes.md");
        let rows = crate::provider::cgibin::runbook_rows(page, meaning);
        assert!(rows >= 25, "only {rows} rows read from the runbook table");
        for code in [
            -1, 40001, 40125, 40014, 42001, 45009, 45011, 48004, 50002, 53500, 48001, 50001, 40164,
            61004, 40013, 40002, 46003, 40007, 45159, 48005, 45056, 45057, 45058, 45059, 45157,
            45158, 40032, 40003, 49003, 40016, 40017, 40018, 48006,
        ] {
            assert!(
                page.contains(&format!("| {code} |")),
                "errcode {code} is missing from the runbook"
            );
        }
    }
}
