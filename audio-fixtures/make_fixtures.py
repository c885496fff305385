#!/usr/bin/env python3
"""Regenerate the scripted two-channel support-call fixtures.

Usage (from the repository root or anywhere):

    python3 audio-fixtures/make_fixtures.py

Needs only the Python 3 standard library plus the `espeak-ng` and `sox`
command-line tools.  Output is deterministic: espeak-ng and sox are run with
fixed parameters (sox with dithering disabled and in repeatable mode) and the
noise floor comes from a seeded linear congruential generator.

Files written next to this script:

    call_escalation.wav          16 kHz, s16le, 2 ch (0 = agent, 1 = customer)
    call_escalation.script.json
    call_friendly.wav            16 kHz, s16le, 2 ch
    call_friendly.script.json
    call_escalation_8k.wav       escalation call through G.711 mu-law @ 8 kHz,
                                 back to s16le, 8 kHz, 2 ch
    call_escalation_8k.script.json
    call_signals.wav             sarcasm, a mixed turn, a card number and an
                                 e-mail address spoken as words
    call_signals.script.json
    call_prosody.wav             one customer; the same sentence calm, angry
                                 and resigned after a calm baseline
    call_prosody.script.json
    call_calm.wav                a customer who states a problem calmly and is
                                 never angry; an agent who apologises and
                                 empathises (no alert may fire)
    call_calm.script.json
    call_talkover.wav            an agent who cuts in on the customer three times
                                 (overlapping turns, for the talk-over hint)
    call_talkover.script.json
    call_es.wav, call_de.wav,    two-party calls in Spanish, German and
    call_fr.wav                  French (espeak-ng es, de, fr-fr voices), each
                                 with an angry and a thanking customer turn
    call_es.script.json, ...

    python3 audio-fixtures/make_fixtures.py call_calm call_es   # only these

With names, only those calls are rebuilt (each keeps its own seed), so the
other files stay byte for byte as they are.

Each script lists every turn with the exact time span (seconds) in which that
turn's speech sits in the file: espeak-ng's own leading/trailing silence is
trimmed before placement and the span is computed from sample counts.
"""

import array
import json
import os
import subprocess
import sys
import tempfile
import wave

HERE = os.path.dirname(os.path.abspath(__file__))

RATE = 16000
LEAD_IN = 0.5          # seconds of noise floor before the first turn
TAIL = 1.0             # seconds of noise floor after the last turn
NOISE_DBFS = -60.0     # RMS of the noise floor on both channels
PEAK_LIMIT = 0.90      # speech peaks (full scale = 1.0) must stay below this
MAX_BYTES = int(os.environ.get("FIXTURE_MAX_BYTES", 3_000_000)) # size cap for each 16 kHz stereo file

AGENT_VOICE = "en-us+m3"
CUSTOMER_VOICE = "en-us"

# Prosody presets: espeak-ng -a amplitude, -p pitch (0-99), -s words per minute.
AGENT = {"voice": AGENT_VOICE, "amplitude": 70, "pitch": 50, "speed": 175}
CUST_CALM = {"voice": CUSTOMER_VOICE, "amplitude": 65, "pitch": 45, "speed": 170}
CUST_CHEERFUL = {"voice": CUSTOMER_VOICE, "amplitude": 70, "pitch": 55, "speed": 175}
CUST_FRUSTRATED = {"voice": CUSTOMER_VOICE, "amplitude": 85, "pitch": 60, "speed": 175}
CUST_ANGRY = {"voice": CUSTOMER_VOICE, "amplitude": 105, "pitch": 72, "speed": 190}
# Quiet, low and slow: the resigned voice of the prosody-control fixture.
CUST_RESIGNED = {"voice": CUSTOMER_VOICE, "amplitude": 35, "pitch": 30, "speed": 125}

def voices(lang, agent_voice, customer_voice):
    """The agent and calm/angry/cheerful customer presets for a language."""
    a = dict(AGENT, voice=agent_voice)
    calm = dict(CUST_CALM, voice=customer_voice)
    # espeak-ng's es/de/fr voices peak higher than en-us at the same amplitude.
    angry = dict(CUST_ANGRY, voice=customer_voice, amplitude=88)
    cheerful = dict(CUST_CHEERFUL, voice=customer_voice)
    return a, calm, angry, cheerful


ES = voices("es", "es+m3", "es")
DE = voices("de", "de+m3", "de")
FR = voices("fr", "fr-fr+m3", "fr-fr")

# Gaps (seconds) between the end of one turn and the start of the next,
# cycled in order.  All within 0.8 - 1.5 s.
GAPS = [0.85, 1.05, 0.8, 0.9, 1.2, 0.8, 0.95, 0.85, 1.0, 0.8, 1.1, 0.9, 1.3]

# (speaker, intended polarity, prosody, text).  Plain spoken English: no
# digits, abbreviations, contractions or symbols other than punctuation, so a
# transcript can be compared word for word.
CALLS = {
    "call_escalation": [
        ("agent", "positive", AGENT,
         "Thank you for calling, I am happy to help."),
        ("customer", "neutral", CUST_CALM,
         "My internet has been down since Monday."),
        ("agent", "neutral", AGENT,
         "Could you please confirm the name on the account?"),
        ("customer", "negative", CUST_FRUSTRATED,
         "This is my third call, and nothing has changed."),
        ("agent", "positive", AGENT,
         "I understand, and I will gladly fix this for you."),
        ("customer", "negative", CUST_ANGRY,
         "Four days offline and you charged me twice. This is absolutely ridiculous!"),
        ("agent", "positive", AGENT,
         "You are right, I refunded the extra charge and added a credit."),
        ("customer", "negative", CUST_ANGRY,
         "Terrible service! I want to cancel my account right now!"),
        ("agent", "positive", AGENT,
         "A technician will visit tomorrow morning, and a manager will call you today."),
        ("customer", "neutral", CUST_CALM,
         "Fine, tomorrow works. I will wait for the call."),
    ],
    "call_friendly": [
        ("agent", "positive", AGENT,
         "Good afternoon, thank you for calling. How can I help?"),
        ("customer", "positive", CUST_CHEERFUL,
         "Hi! I love my service, and I would like to upgrade my plan."),
        ("agent", "positive", AGENT,
         "Wonderful, I would be glad to help with that."),
        ("customer", "neutral", CUST_CALM,
         "How much does the faster plan cost each month?"),
        ("agent", "neutral", AGENT,
         "It is only a little more per month, with no setup fee."),
        ("customer", "positive", CUST_CHEERFUL,
         "Perfect, that sounds like a great deal. Please switch me over."),
        ("agent", "positive", AGENT,
         "All done! I also added a free month as a thank you."),
        ("customer", "positive", CUST_CHEERFUL,
         "Fantastic, thank you so much, you have been very helpful."),
        ("agent", "positive", AGENT,
         "My pleasure. Enjoy the faster speeds, and have a wonderful evening!"),
    ],
    # Sarcasm, a mixed turn and personal data spoken as words.
    "call_signals": [
        ("agent", "positive", AGENT,
         "Thank you for calling, how can I help you today?"),
        ("customer", "neutral", CUST_CALM,
         "Hi, I am calling about a charge on my account."),
        ("agent", "neutral", AGENT,
         "Can you read me the card number on the account?"),
        ("customer", "neutral", CUST_CALM,
         "It is four nine two nine, three eight one three, five zero six two, seven four five five."),
        ("agent", "neutral", AGENT,
         "Thank you, I will transfer you to billing now."),
        ("customer", "sarcastic", CUST_FRUSTRATED,
         "Oh great, another hold queue. Just what I needed today."),
        ("customer", "sarcastic", CUST_FRUSTRATED,
         "Wonderful, so I get to pay twice and wait for an hour."),
        ("agent", "positive", AGENT,
         "I have refunded the second charge to your card right now."),
        ("customer", "mixed", CUST_CALM,
         "Thanks for the refund, but my router still does not work."),
        ("agent", "neutral", AGENT,
         "I can send you a new one. What is your email address?"),
        ("customer", "neutral", CUST_CALM,
         "My email is john dot smith at gmail dot com."),
    ],
    # One customer, prosody controlled: three calm turns set the baseline,
    # then the same sentence calm, angry (loud, high, fast) and resigned
    # (quiet, low, slow). Only the voice differs between the last three.
    "call_prosody": [
        ("customer", "neutral", CUST_CALM,
         "I would like to check the status of my order please."),
        ("customer", "neutral", CUST_CALM,
         "The package was supposed to arrive on Tuesday morning."),
        ("customer", "neutral", CUST_CALM,
         "Could you tell me where it is at the moment?"),
        ("customer", "negative", CUST_CALM,
         "I have been waiting all week for this to be fixed."),
        ("customer", "negative", CUST_ANGRY,
         "I have been waiting all week for this to be fixed."),
        ("customer", "negative", CUST_RESIGNED,
         "I have been waiting all week for this to be fixed."),
    ],
    # A calm problem statement and an agent who apologises: nothing here is
    # an escalation. The agent lines are the ones the issue found read as
    # angry.
    "call_calm": [
        ("agent", "positive", AGENT,
         "Thank you for calling, my name is Sam. How can I help you today?"),
        ("customer", "neutral", CUST_CALM,
         "Hi, yes, my internet keeps dropping every evening and I would like to find out why."),
        ("agent", "neutral", AGENT,
         "I'm sorry to hear that. Let me pull up your account and run a line test."),
        ("customer", "neutral", CUST_CALM,
         "Sure, it usually happens around eight in the evening."),
        ("agent", "neutral", AGENT,
         "I understand, and I apologise for the trouble this has caused you."),
        ("agent", "neutral", AGENT,
         "The line test shows some noise. I can book a technician for Thursday."),
        ("customer", "neutral", CUST_CALM,
         "Thursday is fine. Will someone call me before they come?"),
        ("agent", "neutral", AGENT,
         "Yes, the technician will call you an hour before the visit."),
        ("customer", "positive", CUST_CHEERFUL,
         "Great, thank you very much for your help today."),
        ("agent", "positive", AGENT,
         "You are very welcome. Have a good evening."),
    ],
    # An agent who keeps cutting in before the customer has finished
    # (turns 4, 6 and 8 start over the end of the customer's turn).
    "call_talkover": [
        ("agent", "positive", AGENT,
         "Thank you for calling, this is Alex. How can I help you today?"),
        ("customer", "neutral", CUST_CALM,
         "Hi, I was billed for a premium channel package that I never ordered last month."),
        ("agent", "neutral", AGENT,
         "Okay, can you give me the name on the account please?"),
        ("customer", "neutral", CUST_CALM,
         "It is Maria Lopez, and I already explained this to someone on the phone last week."),
        ("agent", "neutral", AGENT,
         "Right, right, I see the package here on the account."),
        ("customer", "negative", CUST_FRUSTRATED,
         "Please let me finish, I never asked for it and I want the charge taken off my bill."),
        ("agent", "neutral", AGENT,
         "Yes, I can remove it, it will be gone from the next bill."),
        ("customer", "negative", CUST_FRUSTRATED,
         "You keep talking over me, I also want a refund for the month I already paid."),
        ("agent", "neutral", AGENT,
         "Sorry, I will refund last month as well, you will see it in five days."),
        ("customer", "neutral", CUST_CALM,
         "Alright, thank you, I will check my statement next week."),
    ],
    "call_es": [
        ("agent", "positive", ES[0],
         "Buenas tardes, gracias por llamar. ¿En qué puedo ayudarle?"),
        ("customer", "neutral", ES[1],
         "Hola, tengo un problema con la factura de este mes."),
        ("agent", "neutral", ES[0],
         "Claro, ¿me puede confirmar su nombre completo, por favor?"),
        ("customer", "negative", ES[2],
         "¡Me han cobrado dos veces y nadie me da una solución! ¡Es una vergüenza!"),
        ("agent", "neutral", ES[0],
         "Lo siento mucho. Ya he devuelto el cargo duplicado a su cuenta."),
        ("customer", "positive", ES[3],
         "Muchas gracias, es usted muy amable. Me ha ayudado mucho."),
        ("agent", "positive", ES[0],
         "De nada, ha sido un placer. Que tenga un buen día."),
    ],
    "call_de": [
        ("agent", "positive", DE[0],
         "Guten Tag, vielen Dank für Ihren Anruf. Wie kann ich Ihnen helfen?"),
        ("customer", "neutral", DE[1],
         "Hallo, mein Internet funktioniert seit gestern nicht mehr."),
        ("agent", "neutral", DE[0],
         "Das tut mir leid. Können Sie mir bitte Ihre Kundennummer nennen?"),
        ("customer", "negative", DE[2],
         "Das ist schon das dritte Mal diese Woche! Ich bin wirklich wütend und will kündigen!"),
        ("agent", "neutral", DE[0],
         "Ich verstehe Sie. Ein Techniker kommt morgen früh zu Ihnen."),
        ("customer", "positive", DE[3],
         "Vielen Dank, das ist sehr nett von Ihnen. Sie haben mir sehr geholfen."),
        ("agent", "positive", DE[0],
         "Gern geschehen, ich wünsche Ihnen noch einen schönen Tag."),
    ],
    "call_fr": [
        ("agent", "positive", FR[0],
         "Bonjour, merci de votre appel. Comment puis-je vous aider ?"),
        ("customer", "neutral", FR[1],
         "Bonjour, ma commande n'est toujours pas arrivée chez moi."),
        ("agent", "neutral", FR[0],
         "Je comprends. Pouvez-vous me donner votre nom, s'il vous plaît ?"),
        ("customer", "negative", FR[2],
         "C'est inadmissible ! J'attends depuis trois semaines et personne ne me répond !"),
        ("agent", "neutral", FR[0],
         "Je suis désolé. Je vous envoie un nouveau colis aujourd'hui même."),
        ("customer", "positive", FR[3],
         "Merci beaucoup, c'est très gentil. Vous m'avez beaucoup aidé."),
        ("agent", "positive", FR[0],
         "Je vous en prie, avec plaisir. Bonne journée à vous."),
    ],
}

# Turns that start before the previous one ends (talk-over): call -> {turn
# index: seconds of overlap}.  Every other turn follows GAPS.
OVERLAPS = {
    "call_talkover": {4: 1.4, 6: 1.3, 8: 1.5},
}

CHANNEL_OF = {"agent": 0, "customer": 1}


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def read_mono_s16(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, path
        assert w.getframerate() == RATE, (path, w.getframerate())
        data = array.array("h")
        data.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        data.byteswap()
    return data


def synth_turn(text, v, tmpdir, idx):
    """espeak-ng -> 16 kHz mono s16, leading/trailing silence trimmed."""
    raw = os.path.join(tmpdir, "raw%02d.wav" % idx)
    out = os.path.join(tmpdir, "turn%02d.wav" % idx)
    run(["espeak-ng", "-v", v["voice"], "-a", str(v["amplitude"]),
         "-p", str(v["pitch"]), "-s", str(v["speed"]), "-w", raw, text])
    run(["sox", "-D", "-R", raw, "-b", "16", "-e", "signed-integer", out,
         "rate", "-v", str(RATE),
         "silence", "1", "0.01", "0.1%", "reverse",
         "silence", "1", "0.01", "0.1%", "reverse"])
    return read_mono_s16(out)


class Lcg:
    """Numerical Recipes 32-bit LCG; deterministic noise without `random`."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def next_unit(self):
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return self.state / 4294967296.0  # [0, 1)


def noise_track(n, seed):
    # Uniform noise in [-a, a] has RMS a / sqrt(3).
    rms = 32768.0 * 10 ** (NOISE_DBFS / 20.0)
    a = rms * 3 ** 0.5
    g = Lcg(seed)
    return array.array("h", (int(round((2.0 * g.next_unit() - 1.0) * a)) for _ in range(n)))


def build_call(call_id, turns, tmpdir, seed):
    placed = []
    clips = []
    pos = int(round(LEAD_IN * RATE))
    for i, (speaker, polarity, voice, text) in enumerate(turns):
        words = len(text.split())
        assert 6 <= words <= 25, (call_id, i, words)
        assert not any(c.isdigit() for c in text), text
        clip = synth_turn(text, voice, tmpdir, i)
        dur = len(clip) / RATE
        assert 1.5 <= dur <= 8.0, (call_id, i, text, dur)
        if i > 0:
            over = OVERLAPS.get(call_id, {}).get(i)
            if over is not None:
                pos -= int(round(over * RATE))
            else:
                pos += int(round(GAPS[(i - 1) % len(GAPS)] * RATE))
        clips.append((CHANNEL_OF[speaker], pos, clip))
        placed.append({
            "index": i,
            "speaker": speaker,
            "channel": CHANNEL_OF[speaker],
            "text": text,
            "polarity": polarity,
            "start": round(pos / RATE, 6),
            "end": round((pos + len(clip)) / RATE, 6),
            "voice": dict(voice),
        })
        pos += len(clip)
    total = pos + int(round(TAIL * RATE))

    peak = max(max(abs(min(c)), abs(max(c))) for _, _, c in clips) / 32768.0
    assert peak < PEAK_LIMIT, (call_id, "speech peak too high", peak)

    chans = [noise_track(total, seed * 2 + 1), noise_track(total, seed * 2 + 2)]
    for ch, start, clip in clips:
        track = chans[ch]
        for k, s in enumerate(clip):
            v = track[start + k] + s
            track[start + k] = max(-32768, min(32767, v))

    inter = array.array("h", bytes(4 * total))
    inter[0::2] = chans[0]
    inter[1::2] = chans[1]
    if sys.byteorder == "big":
        inter.byteswap()
    path = os.path.join(HERE, call_id + ".wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(inter.tobytes())
    size = os.path.getsize(path)
    assert size < MAX_BYTES, (path, size)

    script = {
        "call_id": call_id,
        "sample_rate": RATE,
        "channels": {"0": "agent", "1": "customer"},
        "duration": round(total / RATE, 4),
        "turns": placed,
    }
    write_script(call_id, script)
    return path, script


def write_script(call_id, script):
    with open(os.path.join(HERE, call_id + ".script.json"), "w") as f:
        json.dump(script, f, indent=1)
        f.write("\n")


def make_8k(src_path, script, tmpdir):
    mulaw = os.path.join(tmpdir, "mulaw.wav")
    out = os.path.join(HERE, "call_escalation_8k.wav")
    # Band-limit and resample (sox `rate -v` low-passes below 4 kHz), then
    # encode as 8-bit G.711 mu-law; no dither so the output is reproducible.
    run(["sox", "-D", "-R", src_path, "-e", "mu-law", "-b", "8", "-c", "2",
         mulaw, "rate", "-v", "8000"])
    run(["sox", "-D", "-R", mulaw, "-e", "signed-integer", "-b", "16", out])
    s8 = json.loads(json.dumps(script))
    s8["call_id"] = "call_escalation_8k"
    s8["sample_rate"] = 8000
    s8["codec_path"] = "16 kHz s16 -> sox rate -v 8000 -> G.711 mu-law -> s16"
    write_script("call_escalation_8k", s8)
    return out


def main():
    only = set(sys.argv[1:])
    unknown = only - set(CALLS)
    if unknown:
        sys.exit("unknown call(s): %s (known: %s)" % (
            ", ".join(sorted(unknown)), ", ".join(CALLS)))
    with tempfile.TemporaryDirectory() as tmpdir:
        for seed, (call_id, turns) in enumerate(CALLS.items(), start=1):
            if only and call_id not in only:
                continue
            path, script = build_call(call_id, turns, tmpdir, seed)
            print("%s: %d turns, %.2f s, %d bytes" % (
                os.path.basename(path), len(script["turns"]),
                script["duration"], os.path.getsize(path)))
            if call_id == "call_escalation":
                p8 = make_8k(path, script, tmpdir)
                print("%s: %d bytes" % (os.path.basename(p8), os.path.getsize(p8)))


if __name__ == "__main__":
    main()
