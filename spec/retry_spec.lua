local retry = require "passage.retry"

describe("retry policy", function()
    local policy = { retry_base_delay_ms = 100, retry_max_delay_ms = 1000, retry_after_max_ms = 5000 }

    it("retries only transient failures of calls that are safe to repeat", function()
        for _, status in ipairs { 429, 502, 503, 504 } do
            assert.is_true(retry.is_transient({ status = status, sent = true }, true))
            assert.is_false(retry.is_transient({ status = status, sent = true }, false))
        end
        for _, status in ipairs { 400, 401, 404, 500, 501 } do
            assert.is_false(retry.is_transient({ status = status, sent = true }, true))
        end
        assert.is_true(retry.is_transient({ kind = "network", status = 0, sent = true }, true))
        assert.is_false(retry.is_transient({ kind = "tls", status = 0, sent = true }, true))
        assert.is_false(retry.is_transient({ kind = "too_large", status = 200, sent = true }, true))
    end)

    it("retries a create only when the request never left", function()
        assert.is_true(retry.is_transient({ kind = "connect", status = 0, sent = false }, false))
        assert.is_false(retry.is_transient({ kind = "network", status = 0, sent = true }, false))
        assert.is_false(retry.is_transient({ kind = "timeout", status = 0, sent = true }, false))
        -- What was written decides, whatever the kind: a reply that is not
        -- HTTP comes after the request went out.
        assert.is_false(retry.is_transient({ kind = "connect", status = 0, sent = true }, false))
        assert.is_true(retry.is_transient({ kind = "network", status = 0, sent = false }, false))
        assert.is_false(retry.is_transient({ kind = "too_large", status = 0, sent = false }, false))
        assert.is_false(retry.is_transient({ kind = "cancelled", status = 0, sent = false }, true))
    end)

    it("reads Retry-After as seconds or as an HTTP date", function()
        assert.equal(3, retry.parse_retry_after("3"))
        assert.equal(120, retry.parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT",
            1445412480)) -- 07:28:00 that day
        assert.equal(0, retry.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412500))
        assert.is_nil(retry.parse_retry_after("soon"))
        assert.is_nil(retry.parse_retry_after(nil))
    end)

    it("backs off exponentially with jitter, up to the cap", function()
        local function at(attempt, r)
            return retry.delay_ms(policy, attempt, nil, function() return r end)
        end
        assert.equal(50, at(1, 0))
        assert.equal(100, at(1, 1))
        assert.equal(200, at(3, 0))
        assert.equal(500, at(10, 0))
        assert.equal(1000, at(10, 1))
    end)

    it("honours Retry-After up to its cap and gives up beyond it", function()
        assert.equal(2000, retry.delay_ms(policy, 1, "2"))
        assert.is_nil(retry.delay_ms(policy, 1, "60"))
        -- found by the fuzzer: 18 digits of seconds wrapped to a negative
        -- delay as milliseconds
        assert.is_nil(retry.delay_ms(policy, 1, "200000000000000000"))
        assert.is_nil(retry.delay_ms(policy, 1, string.rep("9", 40)))
    end)

    it("reads an HTTP date only in its fixed form (a year of four digits)", function()
        assert.is_nil(retry.parse_retry_after("Wed, 21 Oct 99999999999999999999 07:30:00 GMT"))
        assert.is_nil(retry.parse_retry_after("Wed, 210 Oct 2015 07:30:00 GMT"))
    end)
end)
