"""wechatpy's WeCom client against the simulator, driven by the e2e test `e2e_wecom_sim`.

Usage: wechatpy_client.py BASE_URL SCENARIO CORP SECRET
Prints one JSON object with what wechatpy saw. The only thing changed in wechatpy is
where it connects: API_BASE_URL and the gettoken URL point at the simulator instead of
https://qyapi.weixin.qq.com (wechatpy hard-codes the latter in fetch_access_token).
"""
import json
import sys

import requests
from wechatpy.exceptions import APILimitedException, WeChatClientException
from wechatpy.work import WeChatClient


def client_for(base, corp, secret):
    class SimClient(WeChatClient):
        API_BASE_URL = base + "/cgi-bin/"

        def fetch_access_token(self):
            return self._fetch_access_token(
                url=base + "/cgi-bin/gettoken",
                params={"corpid": self.corp_id, "corpsecret": self.secret},
            )

    return SimClient(corp, secret)


def failure(call):
    """The exception class and errcode a call raised, or None when it succeeded."""
    try:
        call()
    except WeChatClientException as e:
        return {"exception": type(e).__name__, "errcode": e.errcode}
    return None


def contacts(base, corp, secret):
    c = client_for(base, corp, secret)
    out = {}
    c.department.create("市场二组", parent_id=1, id=2)
    c.department.create("🚀团队", parent_id=2, id=3, name_en="Rocket")
    c.department.update(3, order=5)
    c.user.create("zhang.san", "张三", department=[2], position="经理", mobile="+86 13800000000")
    c.user.create("rtl.user", "مرحبا بالعالم", department=[3])
    c.tag.create("VIP客户", tag_id=7)
    out["add_users"] = c.tag.add_users(7, user_ids=["zhang.san", "ghost"], department_ids=[3])
    out["departments"] = c.department.list()
    out["subtree"] = c.department.list(2)
    out["user"] = c.user.get("zhang.san")
    out["dept_users"] = c.department.get_users(2, fetch_child=1)
    out["tag"] = c.tag.get_users(7)
    out["tags"] = c.tag.list()
    out["missing_user"] = failure(lambda: c.user.get("nobody"))
    out["delete_parent"] = failure(lambda: c.department.delete(2))
    out["duplicate_user"] = failure(lambda: c.user.create("zhang.san", "again", department=[2]))
    # A token WeCom no longer takes: wechatpy refreshes it and repeats the call.
    requests.post(f"{base}/admin/wecom/corps/{corp}/expire-tokens").raise_for_status()
    out["after_expiry"] = c.tag.list()
    out["stats"] = requests.get(f"{base}/admin/wecom/corps/{corp}").json()
    c.tag.delete_users(7, user_ids=["zhang.san"])
    c.user.update("zhang.san", position="总监")
    c.user.create("temp", "临时", department=[2])
    c.user.delete("temp")
    return out


def corp_tags(base, corp, secret):
    """SECRET is the customer-contact secret; SECRET + "-contacts" the contacts one."""
    c = client_for(base, corp, secret)
    out = {}
    made = c.external_contact.add_corp_tag(None, "客户等级", 5, [{"name": "金卡", "order": 1}, {"name": "银卡"}])
    out["added"] = made["tag_group"]
    group_id = made["tag_group"]["group_id"]
    silver = [t["id"] for t in made["tag_group"]["tag"] if t["name"] == "银卡"][0]
    gold = [t["id"] for t in made["tag_group"]["tag"] if t["name"] == "金卡"][0]
    c.external_contact.add_corp_tag(group_id, None, None, [{"name": "铜卡", "order": 3}])
    c.external_contact.edit_corp_tag(gold, name="白金卡")
    c.external_contact.del_corp_tag(tag_id=[silver])
    c.external_contact.add_corp_tag(None, "来源/渠道", 1, [{"name": "展会"}])
    out["all"] = c.external_contact.get_corp_tag_list()["tag_group"]
    out["by_tag"] = c.external_contact.get_corp_tag_list([gold])["tag_group"]
    out["duplicate"] = failure(lambda: c.external_contact.add_corp_tag(group_id, None, None, [{"name": "白金卡"}]))
    contacts = client_for(base, corp, secret + "-contacts")
    out["wrong_secret"] = failure(lambda: contacts.external_contact.get_corp_tag_list())
    return out


def rate_limited(base, corp, secret):
    c = client_for(base, corp, secret)
    seen = []
    for _ in range(8):
        try:
            c.tag.list()
            seen.append("ok")
        except APILimitedException as e:
            seen.append(f"{type(e).__name__}:{e.errcode}")
    return {"calls": seen}


def frozen(base, corp, secret):
    c = client_for(base, corp, secret)
    return {"list": failure(lambda: c.department.list())}


def wrong_secret(base, corp, secret):
    c = client_for(base, corp, secret + "-wrong")
    return {"list": failure(lambda: c.department.list())}


def main():
    base, scenario, corp, secret = sys.argv[1:5]
    fn = {"contacts": contacts, "rate_limited": rate_limited, "frozen": frozen,
          "wrong_secret": wrong_secret, "corp_tags": corp_tags}[scenario]
    json.dump(fn(base, corp, secret), sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
