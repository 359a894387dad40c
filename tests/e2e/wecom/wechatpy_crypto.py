"""wechatpy's WeCom callback crypto, driven by the e2e test `e2e_wecom_crypto`.

Reads one JSON object on stdin and prints one JSON object:
  {"op": "seal", "token", "key", "corp", "items": [{"message", "timestamp", "nonce"}]}
      -> {"items": [{"body", "encrypt", "msg_signature"}]}    (wechatpy encrypts)
  {"op": "open", "token", "key", "corp", "items": [{"body", "msg_signature", "timestamp", "nonce"}]}
      -> {"items": [{"message"} | {"error": "<exception class>"}]}   (wechatpy decrypts)
  {"op": "verify_url", ... "items": [{"echostr", "msg_signature", "timestamp", "nonce"}]}
      -> {"items": [{"message"} | {"error": ...}]}
"""
import json
import sys

import xmltodict
from wechatpy.work.crypto import WeChatCrypto


def main():
    req = json.load(sys.stdin)
    crypto = WeChatCrypto(req["token"], req["key"], req["corp"])
    out = []
    for item in req["items"]:
        try:
            if req["op"] == "seal":
                body = crypto.encrypt_message(item["message"], item["nonce"], item["timestamp"])
                xml = xmltodict.parse(body)["xml"]
                out.append({"body": body, "encrypt": xml["Encrypt"], "msg_signature": xml["MsgSignature"]})
            elif req["op"] == "open":
                msg = crypto.decrypt_message(item["body"], item["msg_signature"], item["timestamp"], item["nonce"])
                out.append({"message": msg.decode("utf-8") if isinstance(msg, bytes) else msg})
            elif req["op"] == "verify_url":
                msg = crypto.check_signature(item["msg_signature"], item["timestamp"], item["nonce"], item["echostr"])
                out.append({"message": msg.decode("utf-8") if isinstance(msg, bytes) else msg})
            else:
                raise SystemExit("unknown op " + req["op"])
        except Exception as e:  # the test asserts on the class name
            out.append({"error": type(e).__name__})
    json.dump({"items": out}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
