"""What the original service does with a token or a password hash, with its own libraries (python-jose, bcrypt).

  decode TOKEN SECRET   -> the payload as JSON on stdout (exit 0), as JWTAuth.decode_token accepts it; exit 1 when
                           it returns None (JWTError: bad signature, expired, malformed claims)
  checkpw PASSWORD HASH -> exit 0 when AuthService.verify_password (bcrypt.checkpw) accepts, 1 otherwise
"""
import json
import sys

import bcrypt
from jose import JWTError, jwt


def main(argv):
    if len(argv) == 4 and argv[1] == "decode":
        try:
            payload = jwt.decode(argv[2], argv[3], algorithms=["HS256"])
        except JWTError as err:
            print(type(err).__name__, file=sys.stderr)
            return 1
        print(json.dumps(payload))
        return 0
    if len(argv) == 4 and argv[1] == "checkpw":
        try:
            ok = bcrypt.checkpw(argv[2].encode("utf-8"), argv[3].encode("utf-8"))
        except ValueError as err:
            print(err, file=sys.stderr)
            return 1
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
