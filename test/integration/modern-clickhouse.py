"""Runs SQL against a current ClickHouse engine embedded by chdb (used by modern-clickhouse.test.ts).
Reads a JSON list of statements on stdin; runs them in one persistent session; prints a JSON list
of results (the text of each statement's output, or {"error": message})."""
import json, sys, tempfile
from chdb import session

statements = json.load(sys.stdin)
out = []
with tempfile.TemporaryDirectory() as path:
    s = session.Session(path)
    for sql in statements:
        try:
            res = s.query(sql, 'JSONEachRow')
            out.append(str(res))
        except Exception as e:  # report, do not stop: the test decides
            out.append({'error': str(e)})
    s.close()
print(json.dumps(out))
