/* http-client: see http-client.h. */
#include "http-client.h"

#include <math.h>

G_DEFINE_QUARK(wattbridge-http-client-error, http_client_error)

typedef struct {
    HttpClient *client; /* NULL once the client is cleared: the callback only frees */
    SoupMessage *msg;
    GCancellable *cancel;
    WbTimer *timer;
    gboolean timed_out;
    gint64 sent_at;
    HttpDoneFunc done;
    gpointer user_data;
    GDestroyNotify destroy;
} HttpRequest;

static void request_free(HttpRequest *r)
{
    if (r->destroy)
        r->destroy(r->user_data);
    g_clear_object(&r->msg);
    g_clear_object(&r->cancel);
    g_free(r);
}

gboolean http_client_init(HttpClient *client, WbInstance *instance, const WbConfig *config, GError **error)
{
    const char *url = wb_config_get_string(config, "url");
    g_autoptr(GUri) uri = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);
    if (!uri || (g_strcmp0(g_uri_get_scheme(uri), "http") != 0 && g_strcmp0(g_uri_get_scheme(uri), "https") != 0) ||
        !g_uri_get_host(uri) || !*g_uri_get_host(uri)) {
        wb_config_set_error(config, error, "url", "expected http://HOST[:PORT][/PATH], got \"%s\"", url);
        return FALSE;
    }
    memset(client, 0, sizeof *client);
    client->inst = instance;
    client->base = g_strdup(url);
    gsize n = strlen(client->base);
    while (n > 0 && client->base[n - 1] == '/')
        client->base[--n] = '\0';
    client->timeout = wb_config_get_duration(config, "timeout");
    client->interval = wb_config_get_duration(config, "poll-interval");
    client->backoff_max = MAX(wb_config_get_duration(config, "backoff-max"), client->interval);
    client->delay = client->interval;
    client->connected = -1;
    client->requests = g_ptr_array_new();
    /* the timeout is ours (a timer per request, below 1 s if asked);
     * idle connections are kept for the next poll */
    client->session = soup_session_new_with_options("user-agent", "wattbridge/" WB_VERSION, "timeout", 0, NULL);
    return TRUE;
}

void http_client_set_basic_auth(HttpClient *client, const char *user, const char *password)
{
    g_free(client->user);
    g_free(client->password);
    client->user = g_strdup(user);
    client->password = g_strdup(password);
}

void http_client_cancel(HttpClient *client)
{
    if (client->poll_timer)
        wb_timer_free(client->poll_timer);
    client->poll_timer = NULL;
    if (!client->requests)
        return;
    for (guint i = 0; i < client->requests->len; i++) {
        HttpRequest *r = g_ptr_array_index(client->requests, i);
        r->client = NULL;
        wb_timer_free(r->timer);
        r->timer = NULL;
        g_cancellable_cancel(r->cancel);
    }
    g_ptr_array_set_size(client->requests, 0);
}

void http_client_clear(HttpClient *client)
{
    http_client_cancel(client);
    g_clear_pointer(&client->requests, g_ptr_array_unref);
    if (client->session)
        soup_session_abort(client->session);
    g_clear_object(&client->session);
    g_clear_pointer(&client->base, g_free);
    g_clear_pointer(&client->user, g_free);
    g_clear_pointer(&client->password, g_free);
    g_clear_pointer(&client->failure, g_free);
}

/* Credentials: sent with the first request (OpenDTU answers 401 without
 * a challenge when a client says X-Requested-With, and a challenge costs a
 * round trip), and given again when a device asks with a challenge libsoup
 * knows (Basic, MD5 Digest). */
static gboolean on_authenticate(SoupMessage *msg, SoupAuth *auth, gboolean retrying, gpointer user_data)
{
    (void)msg;
    HttpClient *client = user_data;
    if (retrying || !client->password)
        return FALSE;
    soup_auth_authenticate(auth, client->user ? client->user : "admin", client->password);
    return TRUE;
}

static SoupMessage *prepare_for(HttpClient *client, SoupSession *session, SoupMessage *msg)
{
    if (client->password) {
        g_autoptr(SoupAuth) auth = soup_auth_new(SOUP_TYPE_AUTH_BASIC, msg, "Basic realm=\"wattbridge\"");
        if (auth) {
            soup_auth_authenticate(auth, client->user ? client->user : "admin", client->password);
            SoupAuthManager *manager = SOUP_AUTH_MANAGER(soup_session_get_feature(session, SOUP_TYPE_AUTH_MANAGER));
            soup_auth_manager_use_auth(manager, soup_message_get_uri(msg), auth);
        }
        g_signal_connect(msg, "authenticate", G_CALLBACK(on_authenticate), client);
    }
    return msg;
}

SoupMessage *http_client_prepare(HttpClient *client, SoupMessage *msg)
{
    return prepare_for(client, client->session, msg);
}

gint64 http_client_retry_after(SoupMessage *msg)
{
    const char *value = soup_message_headers_get_one(soup_message_get_response_headers(msg), "Retry-After");
    if (!value)
        return 0;
    char *end;
    guint64 s = g_ascii_strtoull(value, &end, 10);
    if (end != value && *end == '\0')
        return (gint64)MIN(s, 86400) * G_USEC_PER_SEC;
    g_autoptr(GDateTime) when = soup_date_time_new_from_http_string(value);
    if (!when)
        return 0;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    return CLAMP(g_date_time_difference(when, now), 0, (gint64)86400 * G_USEC_PER_SEC);
}

/* Status and body: the parsed JSON, or NULL with @error. */
static JsonNode *parse_answer(HttpClient *client, SoupMessage *msg, GBytes *body, GError **error)
{
    guint status = soup_message_get_status(msg);
    if (!SOUP_STATUS_IS_SUCCESSFUL(status)) {
        const char *phrase = soup_message_get_reason_phrase(msg);
        if (!phrase || !*phrase)
            phrase = soup_status_get_phrase(status);
        if (status == SOUP_STATUS_UNAUTHORIZED)
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_STATUS, "HTTP %u %s: %s", status, phrase,
                        client->password ? "the password is wrong" : "the device wants a password (option password)");
        else if (status == HTTP_STATUS_TOO_MANY_REQUESTS)
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_STATUS, "HTTP %u Too Many Requests (Retry-After: %.0f s)",
                        status, (double)http_client_retry_after(msg) / G_USEC_PER_SEC);
        else
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_STATUS, "HTTP %u %s", status, phrase);
        return NULL;
    }
    gsize len = 0;
    const char *data = body ? g_bytes_get_data(body, &len) : NULL;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) parse_error = NULL;
    if (!len || !json_parser_load_from_data(parser, data, (gssize)len, &parse_error)) {
        /* the reason is logged once while it stays the same: no byte
         * counts or parser positions in it, those go to the debug log */
        gsize skip = 0;
        while (skip < len && g_ascii_isspace(data[skip]))
            skip++;
        if (parse_error)
            wb_log(client->inst, WB_LOG_DEBUG, "%s: %zu bytes: %s", client->base, len, parse_error->message);
        if (skip == len)
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "the answer is not JSON (empty)");
        else if (data[skip] == '{' || data[skip] == '[')
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "the answer is not JSON (cut short or garbled)");
        else
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "the answer is not JSON (it starts \"%.*s\")",
                        (int)MIN(len - skip, 12), data + skip);
        return NULL;
    }
    JsonNode *root = json_parser_steal_root(parser);
    if (!root) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "the answer is empty JSON");
        return NULL;
    }
    return root;
}

static void on_sent(GObject *source, GAsyncResult *result, gpointer user_data)
{
    HttpRequest *r = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) body = soup_session_send_and_read_finish(SOUP_SESSION(source), result, &error);
    HttpClient *client = r->client;
    if (!client) { /* cleared: the instance stopped */
        request_free(r);
        return;
    }
    g_ptr_array_remove_fast(client->requests, r);
    wb_timer_free(r->timer);
    client->sent_at = r->sent_at;
    client->answered_at = g_get_real_time();
    g_autoptr(JsonNode) root = NULL;
    if (error && r->timed_out) {
        g_clear_error(&error);
        g_set_error(&error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_TIMEOUT, "no answer within %.2g s",
                    (double)client->timeout / G_USEC_PER_SEC);
    } else if (!error) {
        root = parse_answer(client, r->msg, body, &error);
    }
    r->done(client, r->msg, root, error, r->user_data);
    request_free(r);
}

static void on_timeout(gpointer user_data)
{
    HttpRequest *r = user_data;
    r->timed_out = TRUE;
    g_cancellable_cancel(r->cancel);
}

static void send_async(HttpClient *client, SoupMessage *msg, HttpDoneFunc done, gpointer user_data,
                       GDestroyNotify destroy)
{
    HttpRequest *r = g_new0(HttpRequest, 1);
    r->destroy = destroy;
    r->client = client;
    r->msg = http_client_prepare(client, msg);
    r->cancel = g_cancellable_new();
    r->done = done;
    r->user_data = user_data;
    r->sent_at = g_get_real_time();
    r->timer = wb_timer_new(client->inst, on_timeout, r);
    wb_timer_start(r->timer, (guint)MAX(1, client->timeout / 1000), FALSE);
    g_ptr_array_add(client->requests, r);
    soup_session_send_and_read_async(client->session, r->msg, G_PRIORITY_DEFAULT, r->cancel, on_sent, r);
}

static char *url_for(HttpClient *client, const char *path)
{
    return g_strconcat(client->base, path, NULL);
}

void http_client_get(HttpClient *client, const char *path_and_query, const char *const *headers, HttpDoneFunc done,
                     gpointer user_data)
{
    http_client_get_full(client, path_and_query, headers, done, user_data, NULL);
}

void http_client_get_full(HttpClient *client, const char *path_and_query, const char *const *headers,
                          HttpDoneFunc done, gpointer user_data, GDestroyNotify destroy)
{
    g_autofree char *url = url_for(client, path_and_query);
    SoupMessage *msg = soup_message_new(SOUP_METHOD_GET, url);
    g_assert(msg); /* the base was checked in init, paths are ours */
    for (guint i = 0; headers && headers[i] && headers[i + 1]; i += 2)
        soup_message_headers_replace(soup_message_get_request_headers(msg), headers[i], headers[i + 1]);
    send_async(client, msg, done, user_data, destroy);
}

static SoupMessage *form_message(HttpClient *client, const char *path, const char *field, const char *value)
{
    g_autofree char *url = url_for(client, path);
    g_autofree char *form = soup_form_encode(field, value, NULL);
    return soup_message_new_from_encoded_form(SOUP_METHOD_POST, url, g_steal_pointer(&form));
}

void http_client_post_form(HttpClient *client, const char *path, const char *field, const char *value,
                           HttpDoneFunc done, gpointer user_data)
{
    send_async(client, form_message(client, path, field, value), done, user_data, NULL);
}

JsonNode *http_client_post_form_sync(HttpClient *client, const char *path, const char *field, const char *value,
                                     gint64 deadline, GError **error)
{
    gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_TIMEOUT, "no time left");
        return NULL;
    }
    /* A session of its own: requests cancelled on the shared one give back
     * their connections only when the main context runs again, and with
     * both of a host's connections held a send there would wait forever.
     * Its timeout (whole seconds) bounds each read and write. */
    g_autoptr(SoupSession) session = soup_session_new_with_options(
        "user-agent", "wattbridge/" WB_VERSION, "timeout", (guint)MAX(1, (left + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC),
        NULL);
    g_autoptr(SoupMessage) msg = prepare_for(client, session, form_message(client, path, field, value));
    g_autoptr(GBytes) body = soup_session_send_and_read(session, msg, NULL, error);
    if (!body)
        return NULL;
    return parse_answer(client, msg, body, error);
}

static void publish_connected(HttpClient *client, int connected)
{
    if (client->connected == connected)
        return;
    client->connected = connected;
    WbBatch *batch = wb_batch_new(client->inst);
    wb_batch_add_double(batch, "connected", connected, NULL);
    wb_batch_commit(batch);
}

static void http_client_failed(HttpClient *client, const char *reason, gint64 retry_after_us)
{
    client->failures++;
    client->delay = client->failures == 1 ? client->interval * 2 : client->delay * 2;
    client->delay = MAX(MIN(client->delay, client->backoff_max), retry_after_us);
    if (g_strcmp0(client->failure, reason) != 0) {
        wb_log(client->inst, WB_LOG_WARNING, "%s: %s; its points go stale, next try in %.3g s", client->base, reason,
               (double)client->delay / G_USEC_PER_SEC);
        g_free(client->failure);
        client->failure = g_strdup(reason);
    }
    publish_connected(client, 0);
}

static void http_client_succeeded(HttpClient *client)
{
    if (client->failure)
        wb_log(client->inst, WB_LOG_NOTICE, "%s answers again (after %u failed request%s)", client->base,
               client->failures, client->failures == 1 ? "" : "s");
    g_clear_pointer(&client->failure, g_free);
    client->failures = 0;
    client->delay = client->interval;
    publish_connected(client, 1);
}

/* ---- the poll cycle ------------------------------------------------------------------ */

static void on_poll(gpointer user_data)
{
    HttpClient *client = user_data;
    client->cycle_failed = FALSE;
    client->cycle_start = g_get_monotonic_time();
    client->poll(client, client->poll_data);
}

void http_client_start_polling(HttpClient *client, void (*poll)(HttpClient *client, gpointer user_data),
                               gpointer user_data)
{
    client->poll = poll;
    client->poll_data = user_data;
    client->poll_timer = wb_timer_new(client->inst, on_poll, client);
    on_poll(client);
}

void http_client_cycle_failed(HttpClient *client, SoupMessage *msg, const char *reason)
{
    gint64 retry = 0;
    if (msg && soup_message_get_status(msg) == HTTP_STATUS_TOO_MANY_REQUESTS)
        retry = http_client_retry_after(msg);
    client->cycle_failed = TRUE;
    http_client_failed(client, reason, retry);
}

gboolean http_client_cycle_end(HttpClient *client)
{
    gboolean ok = !client->cycle_failed;
    if (ok)
        http_client_succeeded(client);
    gint64 elapsed = g_get_monotonic_time() - client->cycle_start;
    gint64 wait = ok ? MAX(0, client->interval - elapsed) : client->delay;
    if (client->poll_timer)
        wb_timer_start(client->poll_timer, (guint)MAX(1, wait / 1000), FALSE);
    return ok;
}

/* ---- JSON helpers ---------------------------------------------------------------- */

JsonObject *json_member_object(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;
    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *json_member_array(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;
    return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

JsonObject *json_node_object(JsonNode *node)
{
    return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
}

gboolean json_member_number(JsonObject *o, const char *name, double *value)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;
    if (!n || !JSON_NODE_HOLDS_VALUE(n))
        return FALSE;
    GType t = json_node_get_value_type(n);
    if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE)
        return FALSE;
    *value = json_node_get_double(n);
    return isfinite(*value);
}

const char *json_member_string(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;
    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n)
                                                                                          : NULL;
}

int json_member_bool(JsonObject *o, const char *name)
{
    JsonNode *n = o ? json_object_get_member(o, name) : NULL;
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
        return -1;
    return json_node_get_boolean(n) ? 1 : 0;
}
