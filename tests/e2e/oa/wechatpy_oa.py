"""wechatpy's Official Account client against the simulator, driven by the e2e test `e2e_oa_sim`.

Usage: wechatpy_oa.py BASE_URL SCENARIO APPID SECRET
Prints one JSON object with what wechatpy saw. The only thing changed in wechatpy is
where it connects: API_BASE_URL and the token URL point at the simulator instead of
https://api.weixin.qq.com (wechatpy hard-codes the latter in fetch_access_token).
"""
import json
import sys

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import APILimitedException, WeChatClientException

# A 1x1 PNG with a byte that is not UTF-8, so a client decoding it as text would differ.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def client_for(base, appid, secret):
    class SimClient(WeChatClient):
        API_BASE_URL = base + "/cgi-bin/"

        def fetch_access_token(self):
            return self._fetch_access_token(
                url=base + "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )

    return SimClient(appid, secret)


def failure(call):
    """The exception class and errcode a call raised, or None when it succeeded."""
    try:
        call()
    except WeChatClientException as e:
        return {"exception": type(e).__name__, "errcode": e.errcode}
    return None


def admin(base, method, path, body=None):
    r = requests.request(method, base + path, json=body)
    r.raise_for_status()
    return r.json()


def tour(base, appid, secret):
    c = client_for(base, appid, secret)
    out = {}

    # Menu: none yet (46003 → None), created, read back, deleted.
    out["menu_before"] = c.menu.get()
    c.menu.create({"button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "http://www.soso.com/"}]},
    ]})
    out["menu"] = c.menu.get()
    out["bad_menu"] = failure(lambda: c.menu.create({"button": []}))
    c.menu.delete()
    out["menu_after_delete"] = c.menu.get()

    # Followers as the account sees them.
    out["followers"] = c.user.get_followers()
    out["followers_next"] = c.user.get_followers(out["followers"]["next_openid"])
    openids = list(c.user.iter_followers())
    out["iter_followers"] = openids
    out["batch"] = c.user.get_batch(openids)

    # Tags.
    gd = c.tag.create("广东")
    vip = c.tag.create("VIP客户")
    out["created"] = [gd, vip]
    c.tag.update(vip["id"], "VIP会员")
    out["dup_tag"] = failure(lambda: c.tag.create("广东"))
    out["sys_tag"] = failure(lambda: c.tag.delete(2))
    c.tag.tag_user(gd["id"], openids[:3])
    c.tag.tag_user(vip["id"], openids[0])
    c.tag.untag_user(gd["id"], openids[1])
    out["stranger"] = failure(lambda: c.tag.tag_user(gd["id"], "o" + "x" * 27))
    out["user_tags"] = c.tag.get_user_tag(openids[0])
    first = c.tag.get_tag_users(gd["id"])
    out["tag_page"] = first
    out["tag_page_after"] = c.tag.get_tag_users(gd["id"], first["next_openid"])
    out["iter_tag_users"] = list(c.tag.iter_tag_users(gd["id"]))
    out["tags"] = c.tag.get()
    c.tag.delete(vip["id"])
    out["tags_after_delete"] = c.tag.get()
    out["user_tags_after_delete"] = c.tag.get_user_tag(openids[0])

    # Materials.
    image = c.material.add("image", ("logo.png", PNG, "image/png"))
    out["image"] = image
    video = c.material.add("video", ("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
                           title="发布会", introduction="2025 春季发布会")
    out["video"] = video
    out["batch_images"] = c.material.batchget("image")
    got = c.material.get(image["media_id"])
    out["image_back_equal"] = got.content == PNG
    out["image_url_equal"] = requests.get(image["url"]).content == PNG
    out["video_back"] = c.material.get(video["media_id"])
    out["count"] = c.material.get_count()
    c.material.delete(image["media_id"])
    out["count_after_delete"] = c.material.get_count()
    out["deleted_get"] = failure(lambda: c.material.get(image["media_id"]))
    out["bad_batch"] = failure(lambda: c.material.batchget("image", count=21))

    out["autoreply"] = c.message.get_autoreply_info()

    # A token the account no longer takes: wechatpy fetches a new one and repeats the call.
    before = admin(base, "GET", f"/admin/oa/accounts/{appid}")["tokensIssued"]
    admin(base, "POST", f"/admin/oa/accounts/{appid}/expire-tokens")
    out["after_expiry"] = c.tag.get()
    out["tokens_issued"] = [before, admin(base, "GET", f"/admin/oa/accounts/{appid}")["tokensIssued"]]
    return out


def paging(base, appid, secret):
    """An account with more than one page of followers."""
    c = client_for(base, appid, secret)
    first = c.user.get_followers()
    second = c.user.get_followers(first["next_openid"])
    third = c.user.get_followers(second["next_openid"])
    return {
        "pages": [
            {k: v for k, v in p.items() if k != "data"} | {"has_data": "data" in p}
            for p in (first, second, third)
        ],
        "iterated": len(list(c.user.iter_followers())),
    }


def quota(base, appid, secret):
    c = client_for(base, appid, secret)
    seen = []
    for _ in range(4):
        try:
            c.menu.get()
            seen.append("ok")
        except APILimitedException as e:
            seen.append(f"{type(e).__name__}:{e.errcode}")
    return {"calls": seen}


def menu_get(base, appid, secret):
    c = client_for(base, appid, secret)
    return {"menu_get": failure(lambda: c.menu.get())}


def wrong_secret(base, appid, secret):
    c = client_for(base, appid, secret + "-wrong")
    return {"menu_get": failure(lambda: c.menu.get())}


def main():
    base, scenario, appid, secret = sys.argv[1:5]
    fn = {"tour": tour, "paging": paging, "quota": quota, "menu_get": menu_get,
          "wrong_secret": wrong_secret}[scenario]
    json.dump(fn(base, appid, secret), sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
