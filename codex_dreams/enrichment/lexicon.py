"""Small packaged word lists for the offline heuristics (no gazetteer, no downloads).

The lists are deliberately short and generic: they encode English grammar cues (prepositions, honorifics,
motion verbs, place nouns), not knowledge about particular people or places. Bump
`codex_dreams.enrichment.offline.HEURISTICS_VERSION` when a change here should re-enrich stored memories.
"""

from __future__ import annotations

# Titles that mark the following capitalised word as a person, even at the start of a sentence.
HONORIFICS = frozenset({"Dr", "Mr", "Mrs", "Ms", "Mx", "Prof", "Sir", "Dame", "Aunt", "Uncle", "Grandma", "Grandpa"})
# Honorifics written with a trailing period ("Dr."); the period must not end the sentence.
DOTTED_HONORIFICS = ("Dr", "Mr", "Mrs", "Ms", "Mx", "Prof", "St")

# Capitalised words that are never entities on their own.
NON_ENTITY_WORDS = frozenset(
    {
        "I", "I'm", "I’m", "I've", "I’ve", "I'll", "I’ll", "I'd", "I’d", "OK", "Ok",
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
        "January", "February", "March", "April", "May", "June", "July", "August", "September",
        "October", "November", "December", "Today", "Tomorrow", "Yesterday", "Tonight",
    }
)

# Lowercase words that may join two capitalised words inside one name ("University of Lisbon", "Rio de Janeiro").
NAME_CONNECTORS = frozenset({"of", "de", "da", "do", "del", "della", "la", "le", "van", "von", "der", "den", "du", "upon"})

# Words that commonly open a sentence capitalised without being a name: a sentence-initial span drops them.
SENTENCE_STARTERS = frozenset(
    {
        "a", "an", "the", "this", "that", "these", "those", "my", "our", "your", "his", "her", "their", "its",
        "we", "he", "she", "they", "it", "you", "me", "us", "and", "but", "or", "so", "then", "also", "just",
        "after", "before", "when", "while", "during", "since", "until", "if", "because", "although", "though",
        "today", "tomorrow", "yesterday", "tonight", "finally", "still", "maybe", "perhaps", "really", "again",
        "some", "all", "every", "each", "many", "most", "no", "not", "there", "here", "what", "why", "how",
        "who", "where", "which", "good", "bad", "first", "last", "next", "lunch",
        "dinner", "breakfast", "coffee", "called", "met", "went", "saw", "got", "had", "made", "took", "need",
        "remember", "note", "reminder", "todo", "meeting", "call", "booked", "bought", "visited", "talked",
    }
)

# Prepositions after which a capitalised span is read as a place.
PLACE_PREPOSITIONS = frozenset(
    {"in", "near", "at", "around", "across", "outside", "inside", "through", "toward", "towards", "via",
     "into", "within", "beside"}
)
# "to" and "from" also introduce people ("talked to Sarah", "a letter from Ana"): they mark a place only
# after a motion or travel word, or when the span carries a place cue word.
DIRECTIONAL_PREPOSITIONS = frozenset({"to", "from"})
MOTION_WORDS = frozenset(
    {
        "go", "goes", "going", "went", "gone", "come", "comes", "coming", "came", "drive", "drives", "drove",
        "driving", "driven", "fly", "flies", "flew", "flying", "flight", "flights", "move", "moves", "moved",
        "moving", "travel", "travels", "traveled", "travelled", "traveling", "travelling", "trip", "trips",
        "walk", "walked", "walking", "ride", "rode", "riding", "commute", "commuted", "back", "return",
        "returned", "returning", "headed", "heading", "head", "train", "bus", "road", "route", "ticket",
        "tickets", "visit", "visited", "visiting", "relocate", "relocated", "sailed", "hiked",
        "biked", "cycled", "arrived", "arrive", "departed", "left", "way", "journey",
    }
)

# A capitalised span ending in one of these is a place whatever precedes it ("Central Park", "Union Station").
PLACE_CUE_WORDS = frozenset(
    {
        "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Square", "Plaza", "Park",
        "Station", "Airport", "Museum", "Gallery", "Hospital", "Clinic", "University", "College", "School",
        "Library", "Beach", "Lake", "River", "Mountain", "Mount", "Hill", "Hills", "Valley", "Bay", "Island",
        "Islands", "Harbor", "Harbour", "Bridge", "Hotel", "Restaurant", "Cafe", "Café", "Bar", "Pub",
        "Market", "Mall", "Center", "Centre", "Stadium", "Arena", "Theater", "Theatre", "Church", "Cathedral",
        "Temple", "Castle", "Palace", "Tower", "Zoo", "Garden", "Gardens", "Forest", "Coast", "County",
        "City", "Town", "Village", "District", "Quarter", "Campus", "Office", "Gym",
    }
)

# Common place nouns written in lowercase ("at home", "in the kitchen"): kept as locations after a spatial
# preposition. "to" needs a determiner before the noun ("to the gym"), because "to work" is usually a verb.
PLACE_NOUNS = frozenset(
    {
        "home", "house", "apartment", "flat", "office", "work", "kitchen", "bedroom", "bathroom", "garden",
        "garage", "backyard", "yard", "balcony", "basement", "attic", "gym", "park", "school", "university",
        "campus", "library", "hospital", "clinic", "pharmacy", "church", "cafe", "café", "restaurant", "bar",
        "pub", "supermarket", "store", "shop", "mall", "market", "bakery", "station", "airport", "beach",
        "lake", "river", "mountains", "forest", "woods", "hotel", "museum", "cinema", "theater", "theatre",
        "stadium", "zoo", "pool", "farm", "village", "city", "downtown", "countryside", "car", "train", "bus",
        "plane", "classroom", "lab", "laboratory", "studio", "warehouse", "parking", "playground", "hall",
        "lobby", "hallway", "corridor", "porch", "living room", "dining room",
    }
)
DETERMINERS = frozenset({"the", "my", "our", "your", "his", "her", "their", "a", "an", "this", "that"})

# Emotion vocabulary (regular-expression stems) for emotional salience, beyond VADER's valence.
EMOTION_STEMS = (
    r"lov(?:e|ed|es|ing)", r"hat(?:e|ed|es|ing)", r"afraid", r"scar(?:ed|y)", r"fear\w*", r"terrif\w*",
    r"panic\w*", r"anxi\w*", r"worr\w*", r"nervous", r"angr\w*", r"anger", r"furious", r"rage", r"upset",
    r"sad", r"sadness", r"cr(?:y|ied|ies|ying)", r"tears", r"grie\w*", r"devastat\w*", r"heartbr\w*",
    r"lonel\w*", r"depress\w*", r"happ(?:y|ier|iest|iness)", r"joy\w*", r"thrill\w*", r"excit\w*",
    r"ecstatic", r"delight\w*", r"proud", r"pride", r"grateful", r"thankful", r"ashamed", r"shame",
    r"guilt\w*", r"embarrass\w*", r"shock\w*", r"surpris\w*", r"amaz\w*", r"awe\w*", r"wonderful",
    r"terrible", r"awful", r"horrible", r"disgust\w*", r"jealous\w*", r"relie(?:f|ved)", r"overwhelm\w*",
    r"stress\w*", r"frustrat\w*", r"miserable", r"hurt", r"betray\w*", r"hopeless", r"elated",
)

# Words that mark a memory as worth keeping regardless of feeling (commitments, deadlines, health, money).
IMPORTANCE_CUES = (
    r"important", r"urgent", r"deadline", r"due", r"remember", r"don'?t forget", r"never forget", r"must",
    r"promise\w*", r"appointment", r"birthday", r"anniversary", r"wedding", r"funeral", r"diagnos\w*",
    r"doctor", r"hospital", r"interview", r"contract", r"password", r"decid\w*", r"decision", r"critical",
    r"exam", r"paid", r"pay", r"rent", r"salary", r"allerg\w*", r"emergency",
)

# Auxiliaries and adverbs that may stand between "I" and the main verb ("I have finally finished").
VERB_PREFIXES = frozenset(
    {"just", "finally", "then", "also", "already", "really", "actually", "quickly", "eventually", "have",
     "had", "did", "will", "was", "am", "were", "never", "still", "only", "even", "suddenly", "barely",
     "almost", "successfully", "accidentally", "somehow", "first", "later", "probably", "definitely"}
)
# Verbs that express intention, obligation or state rather than an action (they feed goal/task instead).
NON_ACTION_VERBS = frozenset(
    {"need", "needs", "needed", "want", "wants", "wanted", "plan", "plans", "planned", "planning", "hope",
     "hoped", "hoping", "must", "should", "would", "could", "can", "cannot", "can't", "might", "may", "am",
     "is", "was", "were", "be", "been", "think", "thought", "guess", "believe", "feel", "felt", "know",
     "knew", "wish", "like", "love", "hate", "don't", "didn't", "do", "does", "have", "has", "will",
     "won't", "intend", "aim", "to", "not", "going", "gonna", "seem", "seems", "remember", "forgot",
     "wonder", "mean", "meant", "so", "very", "too", "a", "the", "in", "at", "on", "here", "there"}
)
# Past-tense verbs that often open a note with the subject left out ("Met Ana for lunch").
LEADING_PAST_VERBS = frozenset(
    {"met", "went", "saw", "got", "bought", "made", "took", "ate", "ran", "wrote", "began", "found", "gave",
     "spent", "sent", "told", "came", "drove", "flew", "built", "caught", "brought", "fixed", "called",
     "finished", "started", "booked", "visited", "cooked", "cleaned", "watched", "read", "played", "walked",
     "submitted", "signed", "moved", "paid", "painted", "planted", "talked", "helped", "learned", "learnt",
     "tried", "won", "lost", "sold", "left", "heard", "kept", "taught", "hiked", "baked", "shipped",
     "deployed", "reviewed", "wrapped", "organized", "organised", "attended", "picked", "dropped"}
)
