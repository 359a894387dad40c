//! Word lists and text builders for generated entities: Chinese names with pinyin, mixed
//! Chinese/English prose, department and position names.
//!
//! Contract: pure functions of the RNG passed in (deterministic for a seed); every text
//! builder that promises Chinese returns some Han characters.

use super::rng::Rng;

/// Surnames with pinyin.
pub const SURNAMES: &[(&str, &str)] = &[
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("罗", "luo"),
    ("欧阳", "ouyang"),
];

/// Given-name characters with pinyin.
pub const GIVEN: &[(&str, &str)] = &[
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀英", "xiuying"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("桂英", "guiying"),
    ("子涵", "zihan"),
    ("浩然", "haoran"),
    ("雨桐", "yutong"),
];

/// Department names (Chinese, English).
pub const DEPARTMENTS: &[(&str, &str)] = &[
    ("总经办", "General Office"),
    ("华南销售部", "South China Sales"),
    ("华东销售部", "East China Sales"),
    ("客户服务中心", "Customer Service Center"),
    ("市场部", "Marketing"),
    ("产品研发部", "Product R&D"),
    ("运维部", "Operations"),
    ("财务部", "Finance"),
    ("人力资源部", "Human Resources"),
    ("法务合规部", "Legal & Compliance"),
    ("品牌公关部", "Brand & PR"),
    ("供应链管理部", "Supply Chain"),
];

pub const POSITIONS: &[&str] = &[
    "客服专员 Customer Service Agent",
    "客服主管 Customer Service Lead",
    "销售经理 Sales Manager",
    "产品经理 Product Manager",
    "高级工程师 Senior Engineer",
    "运营专员 Operations Specialist",
    "财务分析师 Financial Analyst",
    "市场总监 Marketing Director",
    "实习生 Intern",
];

pub const CITIES: &[&str] = &[
    "广东省深圳市南山区科技园",
    "上海市浦东新区张江高科",
    "北京市海淀区中关村",
    "浙江省杭州市西湖区文三路",
    "四川省成都市高新区天府大道",
    "湖北省武汉市洪山区光谷",
];

pub const TAG_NAMES: &[&str] = &[
    "VIP客户",
    "潜在客户",
    "已成交",
    "需回访",
    "投诉处理中",
    "渠道合作伙伴",
    "Key Account",
    "老客户 Returning",
    "活动报名 Event Signup",
];

pub const GROUP_NAMES: &[&str] = &[
    "客服一线群",
    "华南区销售周会",
    "VIP客户服务群",
    "新品发布筹备组",
    "Ops On-call 值班群",
    "售后技术支持群",
    "市场活动协调群",
];

pub const KEYWORDS: &[&str] = &[
    "退款",
    "发票",
    "物流",
    "价格",
    "人工客服",
    "营业时间",
    "优惠券",
    "refund",
    "invoice",
    "help",
];

/// Chinese prose fragments (each a clause or sentence).
const ZH: &[&str] = &[
    "感谢您关注我们的服务号，",
    "本周六上午十点将举行新品发布会，",
    "请各位同事在周五之前提交季度总结。",
    "如需开具发票，请在订单完成后七日内联系客服。",
    "我们的客服团队工作时间为每天早九点至晚九点。",
    "近期有不法分子冒充客服，请勿向陌生人透露验证码。",
    "会员积分可在个人中心兑换优惠券，",
    "物流信息一般会在发货后二十四小时内更新。",
    "系统将于凌晨两点进行例行维护，届时部分功能暂停使用。",
    "欢迎加入企业微信交流群，",
    "退款申请审核通过后，款项将原路退回。",
    "本次活动最终解释权归本公司所有。",
    "请保持手机畅通，以便配送员与您联系。",
    "我们会在三个工作日内回复您的反馈。",
];

/// English prose fragments.
const EN: &[&str] = &[
    "Thank you for following our official account. ",
    "The product launch starts at 10:00 on Saturday. ",
    "Please submit your quarterly report before Friday. ",
    "Invoices can be requested within seven days after the order completes. ",
    "Our support team is available from 9am to 9pm every day. ",
    "Never share your verification code with anyone claiming to be support. ",
    "Loyalty points can be redeemed for coupons in your profile. ",
    "Tracking information usually updates within 24 hours of shipping. ",
    "Scheduled maintenance runs at 02:00; some features pause briefly. ",
    "Refunds are returned to the original payment method once approved. ",
    "We reply to every piece of feedback within three business days. ",
];

fn pick_str<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// A Chinese name and its pinyin (`"王伟"`, `"wang wei"`).
pub fn person(rng: &mut Rng) -> (String, String) {
    let (sn, sp) = *rng.pick(SURNAMES);
    let (g1, p1) = *rng.pick(GIVEN);
    let mut name = String::with_capacity(12);
    name.push_str(sn);
    name.push_str(g1);
    let mut pinyin = String::with_capacity(16);
    pinyin.push_str(sp);
    pinyin.push(' ');
    pinyin.push_str(p1);
    if rng.chance(0.3) {
        let (g2, p2) = *rng.pick(GIVEN);
        name.push_str(g2);
        pinyin.push_str(p2);
    }
    (name, pinyin)
}

/// Mixed Chinese/English prose of about `target` bytes (never less than one fragment,
/// always starting with Chinese).
pub fn prose(rng: &mut Rng, target: usize) -> String {
    let mut out = String::with_capacity(target + 128);
    out.push_str(pick_str(rng, ZH));
    while out.len() < target {
        if rng.chance(0.6) {
            out.push_str(pick_str(rng, ZH));
        } else {
            out.push_str(pick_str(rng, EN));
        }
    }
    out
}

/// An 11-digit mainland mobile number.
pub fn mobile(rng: &mut Rng) -> String {
    const PREFIXES: &[&str] = &["138", "139", "150", "186", "177", "135", "199"];
    format!("{}{:08}", rng.pick(PREFIXES), rng.below(100_000_000))
}

/// `2026-01-01T00:00:00Z` plus `secs`, for deterministic timestamps inside payloads.
pub fn stamp(secs: u64) -> String {
    const BASE: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    chrono::DateTime::from_timestamp(BASE + (secs % 31_536_000) as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
