#!/usr/bin/env bash
# test_admin.sh - black-box tests of llmproxy-admin: the user guide's
# commands as written, secrets never in clear on disk or in output, every
# bad input refused with one line and no change, rotation, paths, serve.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/cli/lib.sh

BIN=$(lib_bin_dir)
REAL=$BIN/llmproxy-admin
T=$LIB_TMP
trap 'rm -rf "$T"' EXIT
unset LLMPROXY_DB LLMPROXY_MASTER_KEY_FILE CREDENTIALS_DIRECTORY XDG_DATA_HOME
export LLMPROXY_HOME=$T/home
DB=$LLMPROXY_HOME/llmproxy.db
KEY=$LLMPROXY_HOME/master.key
# the user guide's name for the tool
ln -s "$REAL" "$T/llm-proxy"
A=$T/llm-proxy

if [ ! -x "$REAL" ]; then
	fail "no $REAL (set LLMPROXY_BIN)"
	summary
	exit 1
fi

dump() { sqlite3 "$DB" .dump; }
one_line() { [ -n "$ERR" ] && [ "$(printf '%s\n' "$ERR" | wc -l)" -eq 1 ]; }

# bad CODE REGEX CMD...: exit CODE, one stderr line "llmproxy-admin: "
# matching REGEX, nothing on stdout, database unchanged.
bad() {
	local code=$1 re=$2
	shift 2
	local before after
	before=$(dump)
	run "$@"
	after=$(dump)
	local what="$* -> rc=$RC err=[$ERR]"
	check "exit $code: $what" [ "$RC" -eq "$code" ]
	check "one line: $what" one_line
	check "prefix/message /$re/: $what" grep -Eq "^llmproxy-admin: .*($re)" <<<"$ERR"
	check "no stdout: $what" [ -z "$OUT" ]
	check "db unchanged: $what" [ "$before" = "$after" ]
}
bad_in() { # bad_in INPUT CODE REGEX CMD...
	local input=$1 code=$2 re=$3
	shift 3
	local before after
	before=$(dump)
	run_in "$input" "$@"
	after=$(dump)
	check "exit $code: $*" [ "$RC" -eq "$code" ]
	check "one line: $* [$ERR]" one_line
	check "message /$re/: $* [$ERR]" grep -Eq "^llmproxy-admin: .*($re)" <<<"$ERR"
	check "db unchanged: $*" [ "$before" = "$after" ]
}
is_id() { [[ $2 =~ ^$1-[A-Za-z0-9]{16}$ ]]; }
matches() { [[ $1 =~ $2 ]]; }

# ---------------------------------------------------------------- help
for c in "" init "connection" "connection add" "connection list" "connection show" "connection update" \
	"connection rm" model "model add" "model list" "model rm" vkey "vkey add" "vkey list" "vkey update" \
	"vkey revoke" "vkey enable" "vkey rm" assign assignment "assignment list" "assignment unassign" \
	rotate-master-key serve; do
	# shellcheck disable=SC2086
	run "$A" $c --help
	check "help '$c' exit 0" [ "$RC" -eq 0 ]
	check "help '$c' usage on stdout" grep -q '^usage: llmproxy-admin' <<<"$OUT"
done
check "help created nothing" [ ! -e "$LLMPROXY_HOME" ]

# ---------------------------------------------------------------- init
run "$A" init
check "init exit 0" [ "$RC" -eq 0 ]
check "init says key created" grep -q "created master key at $KEY" <<<"$ERR"
check "init says db created" grep -q "created database at $DB" <<<"$ERR"
check "home is 0700" [ "$(stat -c %a "$LLMPROXY_HOME")" = 700 ]
check "key is 0600" [ "$(stat -c %a "$KEY")" = 600 ]
check "key is 32 bytes" [ "$(stat -c %s "$KEY")" = 32 ]
check "schema version recorded" [ "$(sqlite3 "$DB" "select value from meta where key='schema_version'")" = 1 ]
check "user_version" [ "$(sqlite3 "$DB" "pragma user_version")" = 1 ]
check "WAL mode" [ "$(sqlite3 "$DB" "pragma journal_mode")" = wal ]
check "master check stored" [ "$(sqlite3 "$DB" "select length(value) from meta where key='master_check'")" = 32 ]
keysum=$(md5sum <"$KEY")
run "$A" init
check "init again exit 0" [ "$RC" -eq 0 ]
check "init again keeps key" [ "$(md5sum <"$KEY")" = "$keysum" ]
check "init again says so" grep -q "already initialised" <<<"$ERR"

# hold the database open so the WAL file stays around for the raw scan
mkfifo "$T/fifo"
sqlite3 "$DB" <"$T/fifo" >/dev/null &
HOLDER=$!
exec 9>"$T/fifo"
echo "select count(*) from meta;" >&9

# ---------------------------------------------------------------- the user guide, as written
cd "$T" || exit 1
# 1. OpenAI
C1=$(./llm-proxy connection add --name "OpenAI-Main" --provider "openai" \
  --endpoint "https://api.openai.com" --api-key "sk-proj-YourKey...")
check "openai connection id ($C1)" is_id conn "$C1"
M1=$(./llm-proxy model add --conn-id "$C1" --name "gpt-4-turbo" --remote "gpt-4-turbo-preview")
check "openai model id ($M1)" is_id model "$M1"
# 2. Azure
C2=$(./llm-proxy connection add --name "Azure-Corp" --provider "azure" \
  --endpoint "https://my-company.openai.azure.com" --api-key "your-azure-key")
check "azure connection id" is_id conn "$C2"
M2=$(./llm-proxy model add --conn-id "$C2" --name "gpt-4o" --remote "gpt-4o" \
  --deployment "deployment-name-in-azure")
check "azure model id" is_id model "$M2"
# 3. Gemini (AI Studio)
C3=$(./llm-proxy connection add --name "Gemini-AIStudio" --provider "google" \
  --endpoint "https://generativelanguage.googleapis.com" --api-key "AIzaSy...")
check "gemini connection id" is_id conn "$C3"
M3=$(./llm-proxy model add --conn-id "$C3" --name "gemini-1.5-flash" --remote "gemini-1.5-flash")
check "gemini model id" is_id model "$M3"
# 4. Vertex
C4=$(./llm-proxy connection add --name "Vertex-Prod" --provider "google" \
  --endpoint "https://aiplatform.googleapis.com" --api-key "AQ.Ab8...")
check "vertex connection id" is_id conn "$C4"
M4=$(./llm-proxy model add --conn-id "$C4" --name "gemini-3-flash" --remote "gemini-3-flash-preview")
check "vertex model id" is_id model "$M4"
# client side
V1=$(./llm-proxy vkey add --name "Frontend-App" --key "vk-front-1234")
check "vkey id" is_id vkey "$V1"
G1=$(./llm-proxy assign --vkey-id "$V1" --model-id "$M4" \
  --alias "gpt-4" --tps 50)
check "assignment id" is_id asg "$G1"
G2=$(./llm-proxy assign --vkey-id "Frontend-App" --model-id "$M4" --alias "gemini-3-flash")
check "assign by vkey name" is_id asg "$G2"
cd - >/dev/null || exit 1

check "azure deployment stored" [ "$(sqlite3 "$DB" "select deployment from provider_models where id='$M2'")" = deployment-name-in-azure ]
check "tps stored as rps" [ "$(sqlite3 "$DB" "select rps from assignments where id='$G1'")" = 50.0 ]
check "weight default 1" [ "$(sqlite3 "$DB" "select weight from assignments where id='$G1'")" = 1 ]
check "secret hint masked" [ "$(sqlite3 "$DB" "select secret_hint from connections where id='$C1'")" = "sk-…y..." ]
check "short key hint is …" [ "$(sqlite3 "$DB" "select secret_hint from connections where id='$C3'")" = "…" ]

# generated key: id, then the key, once
run "$A" vkey add --name gen-key
check "vkey add prints 2 lines" [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 2 ]
V2=$(sed -n 1p <<<"$OUT")
GEN=$(sed -n 2p <<<"$OUT")
check "generated vkey id" is_id vkey "$V2"
check "generated key form" matches "$GEN" '^vk-[A-Za-z0-9]{40}$'
run "$A" --json vkey add --name gen-json
JSONKEY=$(sed -n 's/.*"key":"\(vk-[A-Za-z0-9]*\)".*/\1/p' <<<"$OUT")
check "json vkey add has id and key" [ -n "$JSONKEY" ]
check "json vkey add id" grep -Eq '"id":"vkey-[A-Za-z0-9]{16}"' <<<"$OUT"
check "json vkey add is one line" [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ]
run "$A" connection add --name Piped --provider openai --endpoint http://127.0.0.1:9 --api-key - <<<"sk-piped-secret-value-0001"
check "--api-key - from stdin" is_id conn "$OUT"
check "stdin newline stripped" [ "$(sqlite3 "$DB" "select secret_hint from connections where name='Piped'")" = "sk-…0001" ]
printf '{"type":"service_account","project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----SAKEYMATERIAL-----END PRIVATE KEY-----\\n","client_email":"x@p.iam.gserviceaccount.com"}\n' >"$T/sa.json"
run "$A" connection add --name SA --provider vertex --endpoint https://aiplatform.googleapis.com --api-key-file "$T/sa.json"
check "service account JSON accepted" is_id conn "$OUT"
CSA=$OUT

run "$A" connection add --name J --provider azure --endpoint https://j.example --api-key j-secret-key-123456 --api-version 2024-05-01-preview --option deployment_style=v1 --json
check "json connection add" grep -Eq '^\{"id":"conn-[A-Za-z0-9]{16}","name":"J","provider":"azure"' <<<"$OUT"
check "json connection add has options" grep -q '"options":{"deployment_style":"v1"}' <<<"$OUT"
check "json connection add hides key" eval '! grep -q j-secret-key-123456 <<<"$OUT"'
run "$A" model add --conn-id J --name emb --remote text-embedding-3-small --kind embedding --json
check "json model add" grep -Eq '"id":"model-[A-Za-z0-9]{16}".*"kind":"embedding"' <<<"$OUT"
run "$A" vkey add --name stdin-key --key - <<<"vk-from-stdin-5678"
check "--key - reads stdin" is_id vkey "$OUT"
run "$A" assign --vkey-id stdin-key --model-id "$M1" --alias a1 --json
check "json assign" grep -Eq '^\{"id":"asg-[A-Za-z0-9]{16}".*"weight":1' <<<"$OUT"
run "$A" model list --conn-id J --home "$LLMPROXY_HOME"
check "global option after the command" grep -q "text-embedding-3-small" <<<"$OUT"
check "model list filtered" eval '! grep -q gpt-4-turbo-preview <<<"$OUT"'
# ---------------------------------------------------------------- nothing in clear
SECRETS=("j-secret-key-123456" "vk-from-stdin-5678" "sk-proj-YourKey..." "your-azure-key" "AIzaSy..." "AQ.Ab8..." "vk-front-1234" "$GEN" "$JSONKEY" \
	"sk-piped-secret-value-0001" "SAKEYMATERIAL")
check "WAL file exists for the raw scan" [ -s "$DB-wal" ]
D=$(dump)
for s in "${SECRETS[@]}"; do
	check "not in sqlite3 dump: $s" eval '! grep -qF -- "$s" <<<"$D"'
	for f in "$DB" "$DB-wal" "$DB-shm"; do
		[ -e "$f" ] || continue
		check "not in raw $(basename "$f"): $s" eval '! grep -qaF -- "$s" "$f"'
	done
done
run "$A" connection list
check "list ok" [ "$RC" -eq 0 ]
check "list shows hint" grep -q "sk-…y..." <<<"$OUT"
check "list header aligned" grep -Eq '^ID +NAME +PROVIDER +ENDPOINT' <<<"$OUT"
LISTALL=$OUT
run "$A" --json connection list
LISTALL+=$OUT
check "json list is an array" matches "$OUT" '^\[\{.*\}\]$'
for c in "$C1" "$C2" "$C3" "$C4" "$CSA"; do
	run "$A" connection show "$c"
	LISTALL+=$OUT
	run "$A" connection show "$c" --json
	LISTALL+=$OUT
done
run "$A" vkey list
LISTALL+=$OUT
run "$A" vkey list --json
LISTALL+=$OUT
check "vkey list shows prefix" grep -q "vk-f…" <<<"$OUT$LISTALL"
leak=0
for s in "${SECRETS[@]}"; do grep -qF -- "$s" <<<"$LISTALL" && leak=1; done
check "no secret in any list/show output" [ "$leak" -eq 0 ]
check "show by name" grep -q "^id: *$C1" <<<"$("$A" connection show OpenAI-Main)"
exec 9>&-
wait "$HOLDER" 2>/dev/null

# ---------------------------------------------------------------- bad input
bad 2 "unknown provider 'bedrock'" "$A" connection add --name X --provider bedrock --endpoint https://x.example --api-key k
bad 2 "http:// or https://" "$A" connection add --name X --provider openai --endpoint ftp://x.example --api-key k
bad 2 "http:// or https://" "$A" connection add --name X --provider openai --endpoint api.openai.com --api-key k
bad 2 "no host" "$A" connection add --name X --provider openai --endpoint https:// --api-key k
bad 2 "spaces" "$A" connection add --name X --provider openai --endpoint "https://a b.example" --api-key k
bad 2 "user info" "$A" connection add --name X --provider openai --endpoint https://u:pw@x.example --api-key k
bad 2 "invalid port" "$A" connection add --name X --provider openai --endpoint https://x.example:99999 --api-key k
bad 2 "query" "$A" connection add --name X --provider openai --endpoint "https://x.example/?a=1" --api-key k
bad 2 "missing --name" "$A" connection add --provider openai --endpoint https://x.example --api-key k
bad 2 "missing --provider" "$A" connection add --name X --endpoint https://x.example --api-key k
bad 2 "missing --endpoint" "$A" connection add --name X --provider openai --api-key k
bad 2 "missing --api-key" "$A" connection add --name X --provider openai --endpoint https://x.example
bad 2 "only one of" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key k --api-key-file "$T/sa.json"
bad 2 "needs a value" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key
bad 2 "unknown option '--colour'" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key k --colour red
bad 2 "given more than once" "$A" connection add --name X --name Y --provider openai --endpoint https://x.example --api-key k
bad 2 "key=value" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key k --option novalue
bad 2 "--rpm must be a positive integer" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key k --rpm 0
bad 2 "--tpm must be a positive integer" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key k --tpm -5
bad 2 "must not be empty" "$A" connection add --name "" --provider openai --endpoint https://x.example --api-key k
bad 1 "cannot open .*/nope" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key-file "$T/nope"
bad_in "" 2 "is empty" "$A" connection add --name X --provider openai --endpoint https://x.example --api-key -
bad 2 "not a valid JSON" "$A" connection add --name X --provider vertex --endpoint https://x.example --api-key '{"broken'
bad 1 "named 'OpenAI-Main' already exists" "$A" connection add --name OpenAI-Main --provider openai --endpoint https://x.example --api-key k
bad 1 "no connection with id or name 'conn-123'" "$A" model add --conn-id conn-123 --name m --remote r
bad 2 "missing --remote" "$A" model add --conn-id "$C1" --name m
bad 2 "--kind must be chat or embedding" "$A" model add --conn-id "$C1" --name m --remote r --kind image
bad 1 "already has a model named 'gpt-4-turbo'" "$A" model add --conn-id OpenAI-Main --name gpt-4-turbo --remote r
bad 1 "named 'Frontend-App' already exists" "$A" vkey add --name Frontend-App
bad 1 "already has that key value" "$A" vkey add --name other --key vk-front-1234
bad 2 "8 to 256 characters" "$A" vkey add --name other --key short
bad 2 "in the past" "$A" vkey add --name other --expires 2020-01-01T00:00:00Z
bad 2 "neither an RFC 3339" "$A" vkey add --name other --expires tomorrow
bad 2 "neither an RFC 3339" "$A" vkey add --name other --expires 2026-02-30T00:00:00Z
bad 2 "bad duration" "$A" vkey add --name other --expires 0d
bad 2 "--rpm must be a positive integer" "$A" vkey add --name other --rpm 0
bad 2 "--tpm must be a positive integer" "$A" vkey add --name other --tpm 1.5
bad 1 "no virtual key with id or name 'vkey-nope'" "$A" assign --vkey-id vkey-nope --model-id "$M1" --alias a
bad 1 "no model with id or name 'model-nope'" "$A" assign --vkey-id "$V1" --model-id model-nope --alias a
bad 2 "missing --alias" "$A" assign --vkey-id "$V1" --model-id "$M1"
bad 2 "--tps must be a positive number" "$A" assign --vkey-id "$V1" --model-id "$M1" --alias a --tps 0
bad 2 "--tps must be a positive number" "$A" assign --vkey-id "$V1" --model-id "$M1" --alias a --tps fast
bad 2 "--weight must be a positive integer" "$A" assign --vkey-id "$V1" --model-id "$M1" --alias a --weight 0
bad 2 "--burst must be a positive integer" "$A" assign --vkey-id "$V1" --model-id "$M1" --alias a --burst -1
bad 2 "--alias must not contain spaces" "$A" assign --vkey-id "$V1" --model-id "$M1" --alias "a b"
bad 1 "already has model .* under alias 'gpt-4'" "$A" assign --vkey-id "$V1" --model-id "$M4" --alias gpt-4
bad 1 "still has 1 model\(s\)" "$A" connection rm "$C1"
bad 1 "still has 2 assignment\(s\)" "$A" model rm "$M4"
bad 1 "no connection with id or name 'nope'" "$A" connection show nope
bad 1 "no connection with id or name 'nope'" "$A" connection update nope --rpm 5
bad 2 "nothing to update" "$A" connection update "$C1"
bad 1 "named 'Azure-Corp' already exists" "$A" connection update "$C1" --name Azure-Corp
bad 2 "provider cannot be changed" "$A" connection update "$C1" --provider azure
bad 1 "no virtual key with id or name 'nope'" "$A" vkey revoke nope
bad 2 "nothing to update" "$A" vkey update "$V1"
bad 1 "no assignment with id or name 'asg-nope'" "$A" assignment unassign asg-nope
bad 2 "missing ID" "$A" model rm
bad 2 "unknown command 'frobnicate'" "$A" frobnicate
bad 2 "unknown subcommand 'explode'" "$A" connection explode
bad 2 "missing subcommand" "$A" vkey
bad 2 "unexpected argument 'extra'" "$A" connection list extra

"$A" model add --conn-id Azure-Corp --name gpt-4-turbo --remote gpt-4-turbo >/dev/null
bad 1 "model name 'gpt-4-turbo' is ambiguous" "$A" assign --vkey-id "$V1" --model-id gpt-4-turbo --alias amb
# wrong master key and loose key-file modes
head -c 32 /dev/urandom >"$T/other.key"
chmod 600 "$T/other.key"
bad 1 "master key does not match this database" "$A" --master-key-file "$T/other.key" connection list
bad 1 "master key does not match this database" "$A" connection add --name W --provider openai --endpoint https://x.example --api-key k --master-key-file "$T/other.key"
chmod 644 "$T/other.key"
bad 1 "accessible by group or others" "$A" --master-key-file "$T/other.key" connection list
head -c 16 /dev/urandom >"$T/short.key"
chmod 600 "$T/short.key"
bad 1 "exactly 32 bytes" "$A" --master-key-file "$T/short.key" vkey list

# ---------------------------------------------------------------- updates and removals
run "$A" connection update "$C2" --api-version 2024-10-21 --option region=westeurope --option tier=std --rpm 100 --tpm 5000 --endpoint https://my-company.openai.azure.com/
check "update ok" [ "$RC" -eq 0 ]
check "update api-version" [ "$(sqlite3 "$DB" "select api_version from connections where id='$C2'")" = 2024-10-21 ]
check "update options" [ "$(sqlite3 "$DB" "select options from connections where id='$C2'")" = '{"region":"westeurope","tier":"std"}' ]
check "update limits" [ "$(sqlite3 "$DB" "select rpm||'/'||tpm from connections where id='$C2'")" = 100/5000 ]
"$A" connection update Azure-Corp --option tier= --rpm none >/dev/null
check "option removed, limit cleared" [ "$(sqlite3 "$DB" "select options||rpm from connections where id='$C2'")" = '{"region":"westeurope"}0' ]
old_secret=$(sqlite3 "$DB" "select hex(secret) from connections where id='$C2'")
"$A" connection update "$C2" --api-key new-azure-key-0000 >/dev/null
check "api key re-sealed" [ "$(sqlite3 "$DB" "select hex(secret) from connections where id='$C2'")" != "$old_secret" ]
check "hint updated" [ "$(sqlite3 "$DB" "select secret_hint from connections where id='$C2'")" = "new…0000" ]
check "new key not in clear" eval '! grep -qaF new-azure-key-0000 "$DB" "$DB"-wal 2>/dev/null'
"$A" vkey revoke "$V1" >/dev/null
check "revoke disables" [ "$(sqlite3 "$DB" "select disabled from virtual_keys where id='$V1'")" = 1 ]
"$A" vkey enable Frontend-App >/dev/null
check "enable" [ "$(sqlite3 "$DB" "select disabled from virtual_keys where id='$V1'")" = 0 ]
"$A" vkey update "$V1" --rpm 60 --tpm 1000 --expires 2099-01-01T00:00:00Z >/dev/null
check "vkey update" [ "$(sqlite3 "$DB" "select rpm||'/'||tpm||'/'||expires_at from virtual_keys where id='$V1'")" = 60/1000/4070908800 ]
"$A" vkey update "$V1" --expires never --rpm none >/dev/null
check "vkey update clears" [ "$(sqlite3 "$DB" "select rpm||'/'||expires_at from virtual_keys where id='$V1'")" = 0/0 ]
"$A" vkey add --name lim --rpm 7 --tpm 70 --expires 24h >/dev/null
check "vkey add limits + expiry" [ "$(sqlite3 "$DB" "select rpm||'/'||tpm||'/'||(expires_at > strftime('%s','now')+86000) from virtual_keys where name='lim'")" = 7/70/1 ]
G3=$("$A" assign --vkey-id "$V1" --model-id "$M1" --alias gpt-4 --rpm 10 --tpm 100 --burst 5 --weight 3)
check "second model under alias" is_id asg "$G3"
run "$A" assignment list --vkey-id Frontend-App --json
check "assignment list filtered" [ "$(grep -o '"id":"asg-' <<<"$OUT" | wc -l)" -eq 3 ]
"$A" assignment unassign "$G3" >/dev/null
check "unassign" [ "$(sqlite3 "$DB" "select count(*) from assignments where id='$G3'")" = 0 ]
"$A" model rm "$M4" --force >/dev/null
check "model rm --force cascades" [ "$(sqlite3 "$DB" "select count(*) from assignments where model_id='$M4'")" = 0 ]
G4=$("$A" assign --vkey-id "$V1" --model-id "$M3" --alias g)
"$A" connection rm "$C3" --force >/dev/null
check "connection rm --force cascades models" [ "$(sqlite3 "$DB" "select count(*) from provider_models where conn_id='$C3'")" = 0 ]
check "connection rm --force cascades assignments" [ "$(sqlite3 "$DB" "select count(*) from assignments where id='$G4'")" = 0 ]
"$A" connection rm Piped >/dev/null
check "connection rm without models" [ "$(sqlite3 "$DB" "select count(*) from connections where name='Piped'")" = 0 ]
"$A" assign --vkey-id gen-key --model-id "$M1" --alias x >/dev/null
"$A" vkey rm gen-key >/dev/null
check "vkey rm cascades" [ "$(sqlite3 "$DB" "select count(*) from assignments where vkey_id='$V2'")" = 0 ]

# ---------------------------------------------------------------- rotation
before=$(dump)
oldkey=$(md5sum <"$KEY")
touch "$KEY.new"
bad 1 "interrupted rotation" "$A" rotate-master-key
check "refused rotation keeps key" [ "$(md5sum <"$KEY")" = "$oldkey" ]
rm -f "$KEY.new"
hash_before=$(sqlite3 "$DB" "select hex(key_hash) from virtual_keys where id='$V1'")
secrets_before=$(sqlite3 "$DB" "select group_concat(hex(secret)) from connections")
run "$A" rotate-master-key
check "rotate exit 0" [ "$RC" -eq 0 ]
BAK=$(ls "$KEY".bak-* 2>/dev/null | head -1)
check "backup kept" [ -n "$BAK" ] && [ "$(md5sum <"$BAK")" = "$oldkey" ]
check "backup named by UTC time" matches "$BAK" '\.bak-[0-9]{8}T[0-9]{6}Z$'
check "new key differs" [ "$(md5sum <"$KEY")" != "$oldkey" ]
check "new key 0600" [ "$(stat -c %a "$KEY")" = 600 ]
check "no .new left" [ ! -e "$KEY.new" ]
check "secrets re-sealed" [ "$(sqlite3 "$DB" "select group_concat(hex(secret)) from connections")" != "$secrets_before" ]
check "vkey hashes unchanged" [ "$(sqlite3 "$DB" "select hex(key_hash) from virtual_keys where id='$V1'")" = "$hash_before" ]
run "$A" connection list
check "works with the new key" [ "$RC" -eq 0 ]
bad 1 "master key does not match this database" "$A" --master-key-file "$BAK" connection list
sleep 1
run "$A" rotate-master-key
check "second rotation (decrypts everything with the new key)" [ "$RC" -eq 0 ]
check "two backups" [ "$(ls "$KEY".bak-* | wc -l)" -eq 2 ]
bad 1 "already has that key value" "$A" vkey add --name x2 --key vk-front-1234 # hash key survived rotation

# ---------------------------------------------------------------- paths
P=$T/paths
mkdir -p "$P"
run env -u LLMPROXY_HOME HOME="$P/h" "$REAL" init
check "default home under HOME" [ -f "$P/h/.local/share/llmproxy/master.key" ]
run env -u LLMPROXY_HOME HOME="$P/h" XDG_DATA_HOME="$P/xdg" "$REAL" init
check "XDG_DATA_HOME wins over HOME" [ -f "$P/xdg/llmproxy/llmproxy.db" ]
run env LLMPROXY_DB="$P/env.db" LLMPROXY_MASTER_KEY_FILE="$P/env.key" "$REAL" --home "$P/opt" init
check "env db/key override home" [ -f "$P/env.db" ] && [ -f "$P/env.key" ] && [ ! -e "$P/opt/llmproxy.db" ]
run env LLMPROXY_DB="$P/env.db" "$REAL" --db "$P/flag.db" --master-key-file "$P/env.key" init
check "--db beats LLMPROXY_DB" [ -f "$P/flag.db" ]
mkdir -p "$P/creds"
cp -p "$P/env.key" "$P/creds/master-key"
run env CREDENTIALS_DIRECTORY="$P/creds" "$REAL" --db "$P/env.db" --json init
check "CREDENTIALS_DIRECTORY/master-key used" grep -q "\"master_key_file\":\"$P/creds/master-key\"" <<<"$OUT"
run env CREDENTIALS_DIRECTORY="$P/nocreds" "$REAL" --home "$P/c2" --json init
check "missing credential falls back to home" grep -q "\"master_key_file\":\"$P/c2/master.key\"" <<<"$OUT"
rm -f "$P/c2/master.key"
run "$REAL" --home "$P/c2" connection list
check "no new key for an existing db" [ "$RC" -eq 1 ] && [ ! -e "$P/c2/master.key" ]
check "says why" grep -q "not found, but database" <<<"$ERR"
run "$REAL" --home "$P/first" vkey list
check "first use creates key and db" [ "$RC" -eq 0 ] && [ -f "$P/first/master.key" ] && grep -q "created database" <<<"$ERR"
sqlite3 "$P/first/llmproxy.db" "pragma user_version=7"
run "$REAL" --home "$P/first" vkey list
check "newer schema refused" [ "$RC" -eq 1 ] && grep -q "newer than this llmproxy" <<<"$ERR"

# ---------------------------------------------------------------- usage dispatch
run "$A" usage --help
check "usage --help exit 0" [ "$RC" -eq 0 ]

# ---------------------------------------------------------------- serve (with stand-in children)
S=$T/sbin
mkdir -p "$S"
cp "$REAL" "$S/llmproxy-admin"
cat >"$S/proxyd" <<'SH'
#!/usr/bin/env bash
trap 'echo term >"$SERVE_OUT/proxyd.term"; exit 7' TERM
printf '%s\n' "${LLMPROXY_LIMITER:-}" >"$SERVE_OUT/proxyd.env"
printf '%s\n' "$@" >"$SERVE_OUT/proxyd.args"
while :; do sleep 0.1; done
SH
cat >"$S/limiterd" <<'SH'
#!/usr/bin/env bash
trap 'echo term >"$SERVE_OUT/limiterd.term"; exit 0' TERM
printf '%s\n' "$@" >"$SERVE_OUT/limiterd.args"
sock=${2#ipc://}
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$sock" 2>/dev/null
while :; do sleep 0.1; done
SH
chmod 755 "$S/proxyd" "$S/limiterd"
export SERVE_OUT=$T/serve
mkdir -p "$SERVE_OUT"
"$S/llmproxy-admin" --home "$T/shome" serve --first-byte-timeout-ms 500 --max-conns 8 2>"$SERVE_OUT/stderr" &
SP=$!
for _ in $(seq 100); do [ -f "$SERVE_OUT/proxyd.args" ] && break; sleep 0.05; done
PA=$(cat "$SERVE_OUT/proxyd.args" 2>/dev/null)
check "serve started proxyd" [ -n "$PA" ]
check "proxyd --listen default" grep -qx -- "127.0.0.1:8132" <<<"$PA"
check "proxyd --db" grep -qx -- "$T/shome/llmproxy.db" <<<"$PA"
check "proxyd --master-key-file" grep -qx -- "$T/shome/master.key" <<<"$PA"
check "proxyd --limiter" grep -qx -- "ipc://$T/shome/run/limiterd.sock" <<<"$PA"
check "extra flag passed verbatim" grep -A1 -x -- "--first-byte-timeout-ms" <<<"$PA" | grep -qx 500
check "--max-conns passed" grep -A1 -x -- "--max-conns" <<<"$PA" | grep -qx 8
check "LLMPROXY_LIMITER set" grep -qx "ipc://$T/shome/run/limiterd.sock" "$SERVE_OUT/proxyd.env"
check "limiterd args" [ "$(tr '\n' ' ' <"$SERVE_OUT/limiterd.args")" = "--socket ipc://$T/shome/run/limiterd.sock --db $T/shome/llmproxy.db " ]
check "run dir 0711" [ "$(stat -c %a "$T/shome/run")" = 711 ]
sleep 0.3
check "serving line" grep -q "llmproxy: serving on http://127.0.0.1:8132" "$SERVE_OUT/stderr"
kill -TERM "$SP"
wait "$SP"
SRC=$?
check "serve exits with proxyd's status ($SRC)" [ "$SRC" -eq 7 ]
check "proxyd got SIGTERM" [ -f "$SERVE_OUT/proxyd.term" ]
check "limiterd stopped" [ -f "$SERVE_OUT/limiterd.term" ]
bad 2 "ADDR:PORT" "$A" serve --listen nope

summary
