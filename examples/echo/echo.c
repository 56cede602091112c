/*
 * echo - returns what it was invoked with as JSON: method, path, query,
 * headers, request id and the body (base64, so binary bodies survive).
 */
#include <string.h>

#include "sofaas.h"

static void json_str(sofaas_response *res, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sofaas_write(res, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sofaas_write(res, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sofaas_write(res, e, 6);
        } else {
            sofaas_write(res, &s[i], 1);
        }
    }
    sofaas_write(res, "\"", 1);
}

static void base64(sofaas_response *res, const unsigned char *p, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char out[4];
    sofaas_write(res, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[0] = tbl[(v >> 18) & 63];
        out[1] = tbl[(v >> 12) & 63];
        out[2] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[3] = i + 2 < len ? tbl[v & 63] : '=';
        sofaas_write(res, out, 4);
    }
    sofaas_write(res, "\"", 1);
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    sofaas_set_header(res, "Content-Type", "application/json");
    sofaas_printf(res, "{\"method\":");
    json_str(res, req->method, strlen(req->method));
    sofaas_printf(res, ",\"path\":");
    json_str(res, req->path, strlen(req->path));
    sofaas_printf(res, ",\"query\":");
    json_str(res, req->query, strlen(req->query));
    sofaas_printf(res, ",\"request_id\":");
    json_str(res, req->request_id, strlen(req->request_id));
    sofaas_printf(res, ",\"headers\":[");
    for (size_t i = 0; i < req->header_count; i++) {
        sofaas_printf(res, i ? ",[" : "[");
        json_str(res, req->headers[i].name, req->headers[i].name_len);
        sofaas_write(res, ",", 1);
        json_str(res, req->headers[i].value, req->headers[i].value_len);
        sofaas_write(res, "]", 1);
    }
    sofaas_printf(res, "],\"body_len\":%zu,\"body_base64\":", req->body_len);
    base64(res, req->body, req->body_len);
    return sofaas_printf(res, "}\n") < 0;
}
