"""The Aya annotation platform: a web app for original pairs, re-annotations and feedback.

RECIPE.md §7: contributors write prompt/completion pairs in their language, edit
existing pairs while the live character edit distance is shown, vote thumbs up or down
and rate re-annotations 1 to 5. `database` holds the schema (SQLite or PostgreSQL through
SQLAlchemy), `store` the contributions and queues, `accounts` the invitations,
passwords, throttled logins and sessions, `server` the Starlette app on uvicorn (pages in
`templates/`), `export` writes the Aya Dataset schema under the recipe's inclusion rules
with approval ratios and contributor scores, and `commands` adds `aya-t5x annotate
serve|invite|import|export`. See docs/annotation.md.
"""
