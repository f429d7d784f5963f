-- Headless: no window, and none of the modules a game that only talks to
-- an API needs (love.event and love.timer are all it uses).
function love.conf(t)
    t.identity = "passage_walk"
    t.version = "11.4"
    t.console = false
    t.window = false
    t.modules.audio = false
    t.modules.data = false
    t.modules.font = false
    t.modules.graphics = false
    t.modules.image = false
    t.modules.joystick = false
    t.modules.keyboard = false
    t.modules.math = false
    t.modules.mouse = false
    t.modules.physics = false
    t.modules.sound = false
    t.modules.system = false
    t.modules.thread = false
    t.modules.touch = false
    t.modules.video = false
    t.modules.window = false
end
