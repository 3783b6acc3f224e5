package rewards

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// The demo data: each locale pairs its names with the places it uses, so a consumer called
// Łukasz lives in Kraków with a Polish postal code. Read-only.
type demoLocale struct {
	weight  int // share of consumers, in parts of the total
	country string
	first   []string
	last    []string
	places  []demoPlace
	postal  func(r *rand.Rand, prefix string) string
}

type demoPlace struct {
	city, region, postal string // postal is the code's fixed prefix for the place
}

var demoLocales = []demoLocale{
	{weight: 34, country: "US",
		first: []string{"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
			"William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Chris", "Karen",
			"Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Emily", "José", "María", "DeShawn", "Aaliyah", "Zoë"},
		last: []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
			"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
			"Lee", "Nguyen", "Kim", "O'Brien", "Walker", "Young", "Allen", "King"},
		places: []demoPlace{{"New York", "NY", "100"}, {"Los Angeles", "CA", "900"}, {"Chicago", "IL", "606"},
			{"Houston", "TX", "770"}, {"Phoenix", "AZ", "850"}, {"Philadelphia", "PA", "191"}, {"San Antonio", "TX", "782"},
			{"San Diego", "CA", "921"}, {"Dallas", "TX", "752"}, {"San Francisco", "CA", "941"}, {"Seattle", "WA", "981"},
			{"Denver", "CO", "802"}, {"Boston", "MA", "021"}, {"Atlanta", "GA", "303"}, {"Miami", "FL", "331"},
			{"Portland", "OR", "972"}, {"Minneapolis", "MN", "554"}, {"Nashville", "TN", "372"}},
		postal: demoDigits(5)},
	{weight: 8, country: "CA",
		first: []string{"Liam", "Olivia", "Noah", "Emma", "Benjamin", "Charlotte", "Lucas", "Amélie", "Étienne", "Chloé",
			"Félix", "Léa", "Owen", "Maya", "Gabriel", "Sophie"},
		last: []string{"Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin", "Smith",
			"Brown", "MacDonald", "Campbell", "Wilson", "Singh", "Chen"},
		places: []demoPlace{{"Toronto", "ON", "M5V"}, {"Montréal", "QC", "H2X"}, {"Vancouver", "BC", "V6B"},
			{"Calgary", "AB", "T2P"}, {"Ottawa", "ON", "K1P"}, {"Québec", "QC", "G1R"}, {"Halifax", "NS", "B3H"},
			{"Winnipeg", "MB", "R3C"}},
		postal: demoCanadian},
	{weight: 12, country: "GB",
		first: []string{"Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Charlie", "Sophia",
			"Alfie", "Grace", "Freddie", "Poppy", "Siân", "Eilidh", "Niamh", "Rhys"},
		last: []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans", "Thomas",
			"Roberts", "Walker", "Wright", "Robinson", "Patel", "Khan", "Hughes", "MacLeod"},
		places: []demoPlace{{"London", "England", "SW1A"}, {"Manchester", "England", "M1"}, {"Birmingham", "England", "B1"},
			{"Leeds", "England", "LS1"}, {"Glasgow", "Scotland", "G1"}, {"Edinburgh", "Scotland", "EH1"},
			{"Cardiff", "Wales", "CF10"}, {"Belfast", "Northern Ireland", "BT1"}, {"Bristol", "England", "BS1"}},
		postal: demoBritish},
	{weight: 10, country: "DE",
		first: []string{"Lukas", "Anna", "Leon", "Lena", "Jonas", "Marie", "Felix", "Sophie", "Maximilian", "Lea",
			"Jürgen", "Müge", "Björn", "Käthe", "Günter", "Hannah"},
		last: []string{"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
			"Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Yılmaz", "Groß"},
		places: []demoPlace{{"Berlin", "Berlin", "10"}, {"Hamburg", "Hamburg", "20"}, {"München", "Bayern", "80"},
			{"Köln", "Nordrhein-Westfalen", "50"}, {"Frankfurt am Main", "Hessen", "60"}, {"Stuttgart", "Baden-Württemberg", "70"},
			{"Düsseldorf", "Nordrhein-Westfalen", "40"}, {"Leipzig", "Sachsen", "04"}, {"Dresden", "Sachsen", "01"}},
		postal: demoDigits(5)},
	{weight: 9, country: "FR",
		first: []string{"Gabriel", "Louise", "Léo", "Jade", "Raphaël", "Ambre", "Arthur", "Alice", "Hugo", "Chloé",
			"Lucas", "Inès", "Noé", "Zoé", "François", "Hélène", "Benoît", "Maëlle"},
		last: []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
			"Simon", "Laurent", "Lefèvre", "Michel", "Garnier", "Rousseau", "Girard", "Bonnet"},
		places: []demoPlace{{"Paris", "Île-de-France", "750"}, {"Marseille", "Provence-Alpes-Côte d'Azur", "130"},
			{"Lyon", "Auvergne-Rhône-Alpes", "690"}, {"Toulouse", "Occitanie", "310"}, {"Nice", "Provence-Alpes-Côte d'Azur", "060"},
			{"Nantes", "Pays de la Loire", "440"}, {"Strasbourg", "Grand Est", "670"}, {"Bordeaux", "Nouvelle-Aquitaine", "330"},
			{"Lille", "Hauts-de-France", "590"}},
		postal: demoDigits(5)},
	{weight: 5, country: "ES",
		first: []string{"Hugo", "Lucía", "Martín", "Sofía", "Pablo", "Martina", "Álvaro", "Paula", "Alejandro", "Valeria",
			"Íñigo", "Begoña", "Sergio", "Nuria"},
		last: []string{"García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez",
			"Martín", "Jiménez", "Ruiz", "Muñoz", "Ibáñez"},
		places: []demoPlace{{"Madrid", "Comunidad de Madrid", "280"}, {"Barcelona", "Cataluña", "080"}, {"Valencia", "Comunitat Valenciana", "460"},
			{"Sevilla", "Andalucía", "410"}, {"Bilbao", "País Vasco", "480"}, {"Málaga", "Andalucía", "290"}},
		postal: demoDigits(5)},
	{weight: 4, country: "MX",
		first: []string{"Santiago", "Ximena", "Mateo", "Regina", "Sebastián", "Valentina", "Diego", "Camila", "José", "Guadalupe"},
		last:  []string{"Hernández", "García", "Martínez", "López", "González", "Pérez", "Rodríguez", "Sánchez", "Ramírez", "Cruz"},
		places: []demoPlace{{"Ciudad de México", "CDMX", "06"}, {"Guadalajara", "Jalisco", "44"}, {"Monterrey", "Nuevo León", "64"},
			{"Puebla", "Puebla", "72"}, {"Mérida", "Yucatán", "97"}},
		postal: demoDigits(5)},
	{weight: 4, country: "PL",
		first: []string{"Łukasz", "Zofia", "Jakub", "Zuzanna", "Wojciech", "Małgorzata", "Paweł", "Agnieszka", "Michał", "Katarzyna",
			"Krzysztof", "Joanna"},
		last: []string{"Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski", "Zieliński",
			"Szymański", "Woźniak", "Dąbrowski", "Król"},
		places: []demoPlace{{"Warszawa", "mazowieckie", "0"}, {"Kraków", "małopolskie", "3"}, {"Łódź", "łódzkie", "9"},
			{"Wrocław", "dolnośląskie", "5"}, {"Poznań", "wielkopolskie", "6"}, {"Gdańsk", "pomorskie", "8"}},
		postal: demoPolish},
	{weight: 4, country: "JP",
		first: []string{"翔太", "花子", "陽翔", "結衣", "蓮", "さくら", "大輝", "美咲", "Haruto", "Yui", "Sota", "Aoi"},
		last:  []string{"佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "Sato", "Suzuki", "Takahashi", "Tanaka"},
		places: []demoPlace{{"東京", "東京都", "100"}, {"大阪", "大阪府", "530"}, {"Yokohama", "Kanagawa", "220"},
			{"京都", "京都府", "600"}, {"Sapporo", "Hokkaido", "060"}, {"福岡", "福岡県", "810"}},
		postal: demoJapanese},
	{weight: 4, country: "NL",
		first: []string{"Daan", "Emma", "Sem", "Julia", "Lucas", "Mila", "Bram", "Tess", "Joëlle", "Sanne", "Thijs", "Fleur"},
		last: []string{"de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
			"Meijer", "de Boer", "Mulder"},
		places: []demoPlace{{"Amsterdam", "Noord-Holland", "10"}, {"Rotterdam", "Zuid-Holland", "30"}, {"Den Haag", "Zuid-Holland", "25"},
			{"Utrecht", "Utrecht", "35"}, {"Eindhoven", "Noord-Brabant", "56"}, {"Groningen", "Groningen", "97"}},
		postal: demoDutch},
	{weight: 3, country: "SE",
		first: []string{"Erik", "Astrid", "Lars", "Ingrid", "Björn", "Maja", "Oskar", "Elsa", "Åsa", "Göran", "Linnéa", "Måns"},
		last: []string{"Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
			"Svensson", "Gustafsson", "Lindström", "Åberg"},
		places: []demoPlace{{"Stockholm", "Stockholms län", "11"}, {"Göteborg", "Västra Götalands län", "41"},
			{"Malmö", "Skåne län", "21"}, {"Uppsala", "Uppsala län", "75"}, {"Umeå", "Västerbottens län", "90"}},
		postal: demoSwedish},
	{weight: 3, country: "AU",
		first: []string{"Jack", "Charlotte", "William", "Olivia", "Lachlan", "Isla", "Cooper", "Matilda", "Noah", "Ruby"},
		last:  []string{"Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Nguyen", "Kelly", "Ryan", "Murphy"},
		places: []demoPlace{{"Sydney", "NSW", "20"}, {"Melbourne", "VIC", "30"}, {"Brisbane", "QLD", "40"},
			{"Perth", "WA", "60"}, {"Adelaide", "SA", "50"}, {"Hobart", "TAS", "70"}},
		postal: demoDigits(4)},
}

var demoInterests = []string{"golf", "tennis", "travel", "cooking", "running", "books", "music", "gardening",
	"photography", "wine", "cycling", "fishing", "movies", "fitness", "computing", "fashion", "pets", "skiing",
	"hiking", "gaming", "crafts", "coffee", "theatre", "sailing"}

var demoSegments = []string{"new", "regular", "loyal", "lapsed", "vip"}

var demoDomains = []string{"example.com", "example.org", "example.net"}

// demoAccents spells the accented letters of the demo names in ASCII, for e-mail addresses.
var demoAccents = strings.NewReplacer(
	"á", "a", "à", "a", "â", "a", "ä", "a", "å", "a", "ą", "a", "Å", "a", "Á", "a",
	"é", "e", "è", "e", "ê", "e", "ë", "e", "ę", "e", "É", "e",
	"í", "i", "ï", "i", "ı", "i", "Í", "i", "î", "i",
	"ó", "o", "ö", "o", "ô", "o", "ø", "o", "Ö", "o",
	"ú", "u", "ü", "u", "û", "u",
	"ñ", "n", "ń", "n", "ç", "c", "ć", "c", "ś", "s", "ź", "z", "ż", "z",
	"ł", "l", "Ł", "l", "ß", "ss", "ğ", "g", "Ž", "z",
	" ", "", "'", "",
)

// DemoConsumers calls yield with n synthetic consumers, the same ones for the same seed:
// names, places and postal codes that belong together across a dozen countries (some names
// in accented Latin, Polish or Japanese script), birth years 1940-2008, one to four interests,
// about 60% reading HTML, and attributes plan (gold/silver/bronze) and segment. E-mail
// addresses are unique (first.last.N@example.com, or user-N@ for names with no ASCII
// spelling). About 1% are unsubscribed and 0.5% bounced, so selection has something to skip.
// Consumers are made one at a time, so n may be in the millions. Returns the first error
// yield returns.
func DemoConsumers(n int, seed int64, yield func(Consumer) error) error {
	r := rand.New(rand.NewPCG(uint64(seed), 0x706f696e74706f73)) // "pointpos"
	total := 0
	for i := range demoLocales {
		total += demoLocales[i].weight
	}
	// Each name's address spelling, worked out once per call; "" when it has none.
	slugs := make(map[string]string)
	slug := func(name string) string {
		s, ok := slugs[name]
		if !ok {
			s = strings.ToLower(demoAccents.Replace(name))
			for j := 0; j < len(s); j++ {
				if c := s[j]; !(c >= 'a' && c <= 'z' || c == '-') {
					s = ""
					break
				}
			}
			slugs[name] = s
		}
		return s
	}
	buf := make([]byte, 0, 64)
	for i := 1; i <= n; i++ {
		loc := pickLocale(r, total)
		place := loc.places[r.IntN(len(loc.places))]
		c := Consumer{
			FirstName:  loc.first[r.IntN(len(loc.first))],
			LastName:   loc.last[r.IntN(len(loc.last))],
			City:       place.city,
			Region:     place.region,
			Country:    loc.country,
			PostalCode: loc.postal(r, place.postal),
			// Two uniform draws make a triangle peaking in the 1970s.
			BirthYear: 1940 + (r.IntN(35) + r.IntN(35)),
			Format:    FormatText,
			Status:    StatusActive,
		}
		switch g := r.IntN(100); {
		case g < 48:
			c.Gender = "female"
		case g < 95:
			c.Gender = "male"
		case g < 97:
			c.Gender = "nonbinary"
		}
		if r.IntN(10) < 6 {
			c.Format = FormatHTML
		}
		switch s := r.IntN(1000); {
		case s < 10:
			c.Status = StatusUnsubscribed
		case s < 15:
			c.Status = StatusBounced
		}
		k := 1 + r.IntN(4)
		c.Interests = make([]string, 0, k)
		for len(c.Interests) < k {
			in := demoInterests[r.IntN(len(demoInterests))]
			dup := false
			for _, have := range c.Interests {
				dup = dup || have == in
			}
			if !dup {
				c.Interests = append(c.Interests, in)
			}
		}
		plan := "bronze"
		if p := r.IntN(100); p < 10 {
			plan = "gold"
		} else if p < 40 {
			plan = "silver"
		}
		c.Attributes = map[string]string{"plan": plan, "segment": demoSegments[r.IntN(len(demoSegments))]}

		buf = buf[:0]
		first, last := slug(c.FirstName), slug(c.LastName)
		if first != "" && last != "" {
			buf = append(append(append(append(buf, first...), '.'), last...), '.')
		} else {
			buf = append(buf, "user-"...)
		}
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(append(buf, '@'), demoDomains[r.IntN(len(demoDomains))]...)
		c.Email = string(buf)

		if err := yield(c); err != nil {
			return err
		}
	}
	return nil
}

func pickLocale(r *rand.Rand, total int) *demoLocale {
	w := r.IntN(total)
	for i := range demoLocales {
		if w < demoLocales[i].weight {
			return &demoLocales[i]
		}
		w -= demoLocales[i].weight
	}
	return &demoLocales[len(demoLocales)-1]
}

// demoDigits makes codes of n digits starting with the place's prefix.
func demoDigits(n int) func(*rand.Rand, string) string {
	return func(r *rand.Rand, prefix string) string { return digits(r, prefix, n) }
}

func digits(r *rand.Rand, prefix string, n int) string {
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for len(b) < n {
		b = append(b, demoDigit(r))
	}
	return string(b)
}

func demoLetter(r *rand.Rand) byte { return "ABCEGHJKLMNPRSTVWXYZ"[r.IntN(20)] }

func demoDigit(r *rand.Rand) byte { return byte('0' + r.IntN(10)) }

// demoCanadian makes "M5V 2T6": the place's forward sortation area and a local unit.
func demoCanadian(r *rand.Rand, fsa string) string {
	return fsa + " " + string([]byte{demoDigit(r), demoLetter(r), demoDigit(r)})
}

// demoBritish makes "SW1A 1AA": the place's outward code and an inward code.
func demoBritish(r *rand.Rand, outward string) string {
	return outward + " " + string([]byte{demoDigit(r), "ABDEFGHJLNPQRSTUWXYZ"[r.IntN(20)], "ABDEFGHJLNPQRSTUWXYZ"[r.IntN(20)]})
}

// demoPolish makes "31-123".
func demoPolish(r *rand.Rand, prefix string) string {
	d := digits(r, prefix, 5)
	return d[:2] + "-" + d[2:]
}

// demoJapanese makes "100-0005".
func demoJapanese(r *rand.Rand, prefix string) string {
	d := digits(r, prefix, 7)
	return d[:3] + "-" + d[3:]
}

// demoDutch makes "1012 AB".
func demoDutch(r *rand.Rand, prefix string) string {
	return digits(r, prefix, 4) + " " + string([]byte{demoLetter(r), demoLetter(r)})
}

// demoSwedish makes "114 55".
func demoSwedish(r *rand.Rand, prefix string) string {
	d := digits(r, prefix, 5)
	return d[:3] + " " + d[3:]
}
