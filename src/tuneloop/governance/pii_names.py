"""First names of every locale Faker ships (Faker is MIT-licensed), one lexicon for `PERSON`.

Generated from Faker's person providers (`first_names`, `first_names_male`, `first_names_female`
of each locale), lower-cased, letters and hyphens only, Latin, Greek and Cyrillic
scripts (the PERSON recognizer reads capitalised words of those); regenerate with
`.venv/bin/python bench/pii.py --write-names`. Kept as a module so the redactor needs no Faker at
run time and the lexicon does not change with its version.
"""

FIRST_NAMES = """
aaaqil aaban aabid aachal aada aadam aaden aadhya aadi aadil aafiya aage aagot aahana aahil
aalam aalee aalim aaliyah aamil aamir aamirah aanuoluwapo aapo aaqil aarav aarif aarini aariz
aarna aarnav aarne aaro aaron aarush aaryan aarón aashi aashif aashir aasif aasim aatif aatiq
aatos aaus aayan aayush aazim ab aba abaan abagail abayomi abb abbas abbey abbi abbie abbigail
abbos abbott abby abdalla abdallah abdelatif abdelkader abdellah abderaouf abderrahmane abdi
abdiel abdihakim abdirahman abdiş abdu abduaziz abduboriy abdul abdulbekir abdulgazi abdulhamid
abdulkadir abdullah abdullahi abdulloh abdulmenaf abdulsemet abdumalik abdurahmon abdurrahman
abdón abdülahat abdülcemal abdülhadi abdülkerim abdülsamed abdürreşit abe abebi abednego abeer
abeiku abel abela abelardo abelone abena abeni abha abhimanyu abhiram abid abie abigael abigail
abigaili abigale abigayle abigaíl abilio abina abiodun abiona abiye abner abosede abraham abram
abril abror abubakar abubakr abuzar abyasa acar acarkan ace acey achiel achieng achille achim
achsah acie aclan acy ada adaeze adah adak adal adalbert adalberto adaline adalyn adalynn adam
adamaris adamo adams adan adasal add adda addi addie addison addisyn addyson addý ade adebiyi
adebowale adebukola adedayo adedeji adekitan adekola adekunle adel adela adelaida adelaide
adelard adelardo adelasia adelbert adele adeleke adelgunde adelheid adelia adelin adelina
adelinde adeline adell adella adelle adelmo adelyn adelynn adelía adem aden adenike adeniyi
adeolu adeoti adepeju aderopo adesewa adeshina adesoji adesua adetayo adetoke adetoun adeyi
adhiarja adhra adi adia adiarja adiela adigun adika adikara adil adila adilene adilə adimu adin
adina adinata adis adison aditya adlai adlan adline admir admiral adnan adolf adolfine adolfo
adolph adolphe adolphus adomas adonis adora adoración adrain adria adriaan adrian adriana
adriane adrianna adrianne adriano adriel adrien adriene adrienn adrienne adrija adrijana adrián
adriána adron adrían adríana adríel adunni advaith advay advik advika adviye adweta adwoa adya
adyson adán adèle adéla adélaïde adíel adólf adıgün aedan aedin aengus aenne afaq afer aferdita
affie afia afife afil afiq afolarin afonso afra afrim afruza aftin afton afua afət agapito
agastya agata agatha agathe aggie aggrey agim agla aglaia agnar agne agnea agnes agnesa agnese
agness agneta agnete agni agnieszka agnolo agnos agnès agnė agostina agostino agripina agris
agron agus agusta agustin agustina agustus agustín agáta agða ah ahat ahmad ahmed ahmet ahsen
ahter ahti aicha aida aidan aideen aiden aidyn aidə aiga aigars aija aijuka aiko aila ailbhe
aileen ailene aili ailis ailish aimable aime aimee aimo aimé aimée aina ainara aine aino ainoa
ainsley ainārs airi aisha aishani aishling aisling aislinn aistis aisyah aitana aitor aivar
aivaras aivars aiyana aiyanna aja ajala ajan ajani ajda ajeng ajiman ajimat ajimin ajiono ajla
ajna ajoke akalan akanmu akar akarsana akatay akay akbar akbaş akboğa akcivan akdora akdurmuş
akeelah akeem akgöl akgüneş aki akif akifə akinkunmi akinlabi akinwale akinyi akira akise
akkerman akmal akmaner akmaral akobir akos akosua akoth akram aksay aksel akseli akshay aksoy
aksöğüt aktemür akua akumaa akumu akver akwasi akwesi akyıldız akçabay akçasu aköz akınal al ala
alaaddin alabama alabezek alade aladin aladino alaeddin alain alaina alambana alamiro alamu alan
alana alanalp alani alanis alanna alannah alanta alanzo alara alastair alattin alaya alayna alaz
alba alban albano albeiro alberico albert alberta alberte albertha albertina albertine alberto
alberts albertus albin albina albino albion albrecht albulena alby albín albína alcan alcee
alcide alcides alcie alcira alda aldair aldar aldemar alden alderano aldin aldis aldný aldo
aldona aldonza aldís ale alea aleah alease alec alecia aleck aleen aleena aleida aleisha aleix
alejandra alejandrina alejandro alejo alek aleks aleksandar aleksander aleksandr aleksandra
aleksandras aleksandrs aleksanteri aleksei aleksej aleksi alen alena alene alenka aleodor alesha
alesia alessandra alessandro alessia alessio aleta aletha alethea aletta alex alexa alexandar
alexande alexander alexandr alexandra alexandre alexandrea alexandria alexandrie alexandrina
alexandro alexandros alexandru alexandría alexe alexei alexej alexi alexia alexina alexis alexus
alexys alexzander alexía alexíus aleš alf alfa alferd alfie alfio alfons alfonse alfonsina
alfonso alfonz alfonzo alford alfred alfreda alfredo alfreð alfréd alfrēds alfífa alger algernon
algie algirdas algot algış ali alia aliabbas aliana alica alice alicia alicja alida aliihsan
alijah alika alin alina aline alinur alirio aliro alis alisa alise aliseydi alisha alison alissa
alisson alistair alistar alister alivia alix aliya aliyah aliyu aliyə aliza alize alizée alja
aljaž aljoša alka alkor alla allahverdi allan allana allean alleen allegra allen allena allene
alli allie alline allison allisson ally allyn allyson allyssa allý alma almar almasi almast
almaz almeda almedia almendra almer almeta almina almir almira almon almond almudena almus almut
almuth almyra alois aloisia alojz alojzia alojzij alojzija aloma alondra alonso alonza alonzo
aloys aloyse aloysius aloïs alparslan alpcan alpha alpheus alphonce alphons alphonse alphonsine
alphonso alphonsus alpin alpsü alrekur alrún alsoy alston alta altha althea altie altin alto
alton altoğan altuğ altınbike altınkaya altınçiçek altınışın alva alvah alvan alvar alvaro alve
alveiro alvena alver alvera alverda alverta alvia alvie alvilda alvin alvina alvira alvis alvy
alvīne alwilda alwin alwina alwine aly alya alyce alycia alys alysa alyse alysha alysia alyson
alyssa alyssia alyvia alzina alícia alída alína alís alísa alīda alışık alžbeta alžběta ama
amada amadea amadeo amadeus amado amador amahle amaia amaira amal amalia amalie amalija amalía
amancio amanda amandine amando amani amar amara amarachi amare amari amarilis amarion amaris
amaro amaru amasa amaury amaya amaç ambar amber amberly ambers ambre ambrose ambrosio ambróz
amedeo amedeu amel amela amelia amelie amelija amelía america americo amerigo amey ami amiah
amico amie amil amilía amin amina aminatu amine amir amira amirah amit amiya amiyah amleto amma
ammie ammon amoke amol amon amondi among amope amor amos amparo amra amre amri amrita amruta amy
amy-lee amy-leigh amya amza amália amélia amélie américa américo amílcar amír amíra amý amālija
an ana anabel anabela anabella anabelle anacleto anahera anahi anahis anahí anaida anais analia
analía anamaria anamika ananias anar anargül anaru anas anasa anastacia anastacio anastasia
anastasie anastasio anastasios anastasía anastatia anastazja anastázie anatol anatole anatoli
anatolie anatolij anay anaya anaëlle anaís anaïs anca ancel ancil ancizar ancuța anda anders
anderson andile andiç andjela andjelina andon andor andra andrada andrae andre andrea andreas
andree andreea andrei andreia andrej andreja andrejka andrejs andrena andres andrew andrey
andrešs andri andria andrian andrija andrin andrina andris andrius andrus andrzej andrá andrás
andré andréa andréas andrée andrés andwele andy anděla ane anej anel anemona anes aneta anete
anett anetta anette anežka anfernee anfinn angalia angantýr angavu ange angel angela angele
angeles angelia angelic angelica angelika angelina angeline angelino angelique angelita angella
angelo angelíka anggabaya anghel anghelina angi angie angus angèle angélica angélique anh ani
anibal anica anice anicet anie aniela anika anikó anina anirudh anis anisa anissa anita anitra
aniya aniyah anișoara anja anjali anjanette anjelica anjolaoluwa anka anke ankica anmol ann
ann-britt ann-charlott ann-charlotte ann-christin ann-christine ann-kathrin ann-kristin
ann-louise ann-mari ann-marie ann-sofi ann-sofie anna anna-karin anna-lena anna-liisa anna-lisa
anna-luise anna-maria anna-marie annabel annabell annabella annabelle annah annak annalena
annaliese annalisa annalise annalísa annamae annamaria annamarie annamária annar annarr annas
annastacia anne anne-catherine anne-françoise anne-kathrin anne-katrin anne-laure anne-lise
anne-marie anne-rose anne-sophie annedore annegret annegrete annekatrin anneke annel anneleen
annelene anneli annelie annelies anneliese annelise annelore annelí annemarie annemette annemie
annemijn anner annerose annes annet annett annetta annette anney anni annibale annica annice
annick annie anniina annija annika annikki annina annis annita annmarie annukka annunziata anny
annía anný anom anon anona anoni anouk ansaldo ansel anselm anselma anselmo ansgar ansh ansis
ansley anson ansora anssi antal antanas ante antero anthoney anthony antim antione antionette
antje anto antoaneta antoin antoine antoinette anton antone antonela antonella antonello
antonetta antonette antoni antonia antonie antonieta antonietta antonija antonin antonina
antonino antonio antonios antoniu antonius antons antony antonía antonín antoníus antoon
antoņina antra ants antti antun antwain antwan antwon antònia antónia antónio antônio anu
anunciación anusha anuța anvar anvi anwar anya anyango anyelo anyi aníbal aníka anína aníta anđa
anđela anže aodhan aoibheann aoibhin aoibhinn aoife aongus apaydın apisara apolena apolinar
apolline apollo apollonia apolonia apostolos april apríl aqil aquiles ara arabella araceli
aracely aradhana arah aral araminta aran aranka aras arba arben arbey arbie arbnor arcan arcelia
arch archer archibald archie arda ardath ardelia ardell ardella ardelle arden ardeth ardian
ardis ardit ardita ardith ardyce ardís areli arely arent ares aretha arey arezki argemiro argie
argono argu arham ari aria ariadna arian ariana ariane arianna arianne aribert aric arie ariel
ariela ariella arielle arielė arietta arif arifcan arifə arijus arike ariki arild arilíus arin
arina arinbjörg arinbjörn arinola aris arisa arisara aristide aristides aristița arizona arja
arjun arkadiusz arkie arkut arla arlan arland arleen arlen arlena arlene arlet arleth arletta
arlette arley arlie arlin arlind arlinda arline arlington arlis arlo arly arlyn arlyne armahan
arman armand armandas armande armando armands armani armas armelle armend armenía armida armin
arminas arminda arminta armond armstead arna arnald arnaldo arnaldur arnar arnas arnau arnaud
arnaude arnav arnberg arnbergur arnbjörg arnbjörn arnborg arnd arndt arndís arndór arne arnes
arnett arnetta arney arnfinna arnfinnur arnfreyr arnfried arnfríður arngeir arngerður arngils
arngrímur arngunnur arnheiður arnhildur arnie arnika arnim arnis arnkatla arnkell arnlaug
arnlaugur arnleif arnleifur arnljót arnljótur arnlín arnmundur arnmóður arno arnoddur arnold
arnoldas arnoldo arnolds arnošt arnrós arnrún arnsteinn arnulf arnulfo arnviður arnór arnóra
arnúlfur arnþrúður arnþór arnþóra aroa aroha aron aronas arpağ arpád arra arran arrie arron
arsenie arsenio arsim arsipatra art arta artan artanto artawan artelia artemio artemisa arther
arthor arthur arthúr artie artis arto arttu artturi artur arturo arturs artúr artūras artūrs aru
arunima arusi arvel arvid arvil arvilla arvin arvo arvydas arvīds arya aryan aryana aryanna
arziye arzu aránzazu aría aríanna aríel aríella arín arína arís aríus arıel arıkol arıpınar
arısoy arūnas asa asad asael asafe asake asalet asali asani asanti asatira asberry asbjørn
asbury ascensión asdrubal asger asha ashanti ashby ashely asher ashlea ashlee ashleigh ashlene
ashley ashli ashlie ashling ashly ashlyn ashlynn ashton ashtyn asia asif asila asilbek asilə
asiman asirwada asirwanda askja asko askur aslan aslanhan aslijan asliye asma asmadi asman
asmianto asmini asmira asmuni ason aspar aspen assa assar assia assumpta assunta asta aston
astrid astride astrit asu asunción aswani asírí asım asəf ataahua atabala atagün atalay atalía
atamoğlan atanur atasagun atatöre atena atenulf atfat atgun atha athanasios atharv atheel athena
athman athuman athumani ati atiena atieno atila atilhan atilio atinuke atit atiyye atla atlanta
atlas atli atma atmaja atnan attaf atte atticus attie attila attilio attracta atılgan aubra
aubree aubrey aubrie aud aude audie audley audra audrey audriana audrianna audrina audrius audry
audy august augusta augustas auguste augustin augustina augustine augusto augusts augustus
augustín aukusti aulikki aulis aune aunyaporn aura auraq aurel aurelia aurelian aureliana
aureliano aurelien aurelija aurelio aurica aurică aurilla aurimas aurora aurore aurthur aurélia
aurélie aurélien aurėja ausma austar austen austin austine austmann austmar auston austra austri
austyn auther author authur autry autumn auðbergur auðbert auðbjörg auðbjörn auðbjört auðdís
auðgeir auðkell auðlín auðmundur auðna auðný auðrún auðun auðunn auður auðólfur aušra aušrinė
ava avah avelino averi averie averil avery avgust avi avie avis avni avon avram avril avunç
avşin awadil awamil awamiri awan awani awero awesi awhina awj awlya awmar awrad axel axelle
axelma axelía axenia axinte aya ayaan ayamin ayan ayana ayanna ayasun ayaydın aybet aybora
aybəniz aycagül aydan aydar ayden aydin aydinç ayduru aydın aydınbey ayelén ayesha aygutalp
aygönenç aygül aygün ayhan ayinde ayinke aykut aykutalp ayla ayleen aylil aylin aylla ayman
aymen aymeric aynilhayat aynur aynurə aynımah ayodeji ayodele ayoka ayoub aypar aysar ayse aysel
aysema aysevim aysoy aysu aysuna aytek ayten aytuna aytöz aytəkin aytən ayu ayub ayush ayushman
ayvas ayyaruk ayyubi ayçan ayçiçək ayülker ayşan ayşeana ayşenur azaan azad azade azahar azahara
azalea azalee azaria azariah azban azeeb azeglio azeneth azettin aziz aziza azize azizi azra
azucena azul azzie azər açıkel açılay aída aïcha aðalberg aðalbergur aðalbert aðalbjörg
aðalbjörn aðalbjört aðalborg aðalborgar aðaldís aðalfríður aðalgeir aðalheiður aðalmundur
aðalráður aðalrós aðalsteina aðalsteinn aðalsteinunn aðalveig aðólf aþena ağa ağahadi ağakişi
ağamalı ağamusa ağasəfa ağaxan ağbegim ağca ağmur aşhan aşir baaba baahir baaizeed baaqee baaqir
baaree baashir baasim baasit baba babar babasola babatunji babawale babe baber babett babette
baby babyboy baccio bachittar badawi badegül badr bagas baghyawati bagiya bagus bagya baha bahaa
bahaddin bahadurjit bahadır bahari bahati bahittin bahtinur bahuraksa bahuwarna bahuwirya baiba
bailee bailey bailie bairbel bairbre bairon bajragin bajram bakari bakda baker bakhshi baki
bakiadi bakianto bakidin bakijan bakiman bakiono bakti baktiadi baktianto baktiono bala
balamantri balangga balapati balatekin balaxanım balca baldassare baldey baldomero baldrún
balduino baldur baldvin baldvina baldwin bale baleegh balendra balhaar bali balidin balijan
balinda baljiwan ballard ballı baltasar baltazar baltaş balthasar balvan balveer balz balázs
bama bambad bambang bambi banara banawa banawi bancar bandile banjeet banks banü baptist
baptiste baqar baqir bara barak baraka barasa barb barbara barbie barbora barbra barbro barbu
barbára barica baris bariş barkha barna barnabás barnard barnett barney barnie baron barr barraq
barrett barri barrie barron barry barsen bart bartek bartholomew bartholomäus bartley bartolomej
bartolomeo bartolomeu bartolomé barton barði barışcan bas basaam basarab bascom baseer basel
basem bashaar bashaarat bashar basharat basheer basheerah bashkim basil basile basilio basim
basir basriye bassam bassi bassí bastiaan bastian bastien bastián bastían basım batal batool
baturay batırhan baudelio baudouin baugur bautista baxter bayard baydu baykan baylee baylie
bayman bayram bayron bayruhan baytal bayzettin bazam bağdat bağdaş başay başhan başok bea beadie
beat beata beate beatrice beatrijs beatrix beatriz beau beauden beaulah bebba bebe beckett
beckham beckie becky beda bedford bedi bediriye bedri bedřich bee beecher begga begim begoña
behiza behrem behruz beinir beinteinn beitir bekan bekbay bekim bekir bektaşi bela belarmino
belen belgizar belia belinda belisario belkize bell bella belle bellisan bello belo belton belva
belén ben bena benard benas bence bendegúz benedek benedetto benedict benedicte benedicto
benedikt benedikta benedikte benedita benek bengibay bengt bengta beni beniamin benice benicio
benidikt benidikta benigna benigno benita benito benjaman benjamen benjamim benjamin benjamine
benjamín benji benjiman benjman benjámin benn benna bennett benney bennie benno benny benný
benoit benol benone benoný benoît benson bent benta bente bentey benthe bentley bento benton
bentína benvenuto benía benício beníta benóní benóný beppe bera berat beray berdie beren berend
berenice berent berezat berg bergdís bergen bergey bergfinnur bergfríður bergheiður berghildur
berghreinn bergjón berglaug berglind bergljót berglín bergmann bergmannía bergmar bergmundur
bergný bergrán bergrín bergrós bergrún bergsteinn bergsveinn bergur bergvin bergþór bergþóra
berit beriye berkal berki berkley berksay berlin bernabé bernadett bernadette bernadine bernard
bernarda bernardine bernardino bernardita bernardo bernd bernd-dieter berndt berneice bernetta
bernfried bernhard bernhardine bernharð bernharður berni bernice bernie berniece bernita bernt
bernward bernódus bernódía berra berran berrin berry bersi bert berta bertalan bertel bertha
berthe berthold bertie bertil bertina berto bertold berton bertram bertrand beryl besart besarta
besey beshte besim besin besnik bess besse bessi bessie bessí beste bestla beta betania betanía
beth betha bethan bethann bethany bethel bethzy betina betsey betsy betsý bett bette betti
bettie bettina betty bettye bettyjane bettylou bettý betúel beula beulah bev bevan beverlee
beverley beverly beyda beyhatun beyler beyonce beyzade bezek beáta beňadik bhanumati bhavani
bhavika bhavini bhavna bhavya bhekani bhekisisa bhekizizwe bhekokwakhe biagio bianca bianka bibi
bibiana bibisora bibiána bibuwa bican bidayet biddie bieke biel bienvenida bil bilaal bilal
bilay bilender bilgen bilginur bilgütay bilha biljana bilkay bilkisu bill billie billie-jo billy
billye bilol biltaş bimala bina binay binbaşar binışık birben bird birdella birdie birger birgid
birgir birgit birgitt birgitta birgitte birgül birkir birna birnir birousk birsan birsen birt
birta birte birtha birthe birtie birtingur birtir birtna biruta biserka bishakha bishop bitten
bitül bizhan bişar bjargar bjargdís bjargey bjargheiður bjarghildur bjarglind bjargmundur
bjargþór bjarkan bjarkar bjarkey bjarki bjarklind bjarma bjarmar bjarmi bjarnar bjarndís bjarne
bjarney bjarnfinnur bjarnfreður bjarnfríður bjarngerður bjarnharður bjarnheiður bjarnhildur
bjarnhéðinn bjarni bjarnlaug bjarnlaugur bjarnleifur bjarnrún bjarnsteinn bjarnveig bjarnólfur
bjarný bjarnþrúður bjarnþór bjarnþóra bjartey bjartmann bjartmar bjartmey bjartur bjartþór bjorn
bjólan bjólfur björg björgey björgheiður björghildur björgmundur björgvin björgólfur björgúlfur
björk björn björney björnfríður björnólfur björt bjørg bjørn bladimir blahoslav blain blaine
blair blaise blake blanaid blanca blanch blanchard blanche blanchie blandine blanduzia blane
blanka blas blathnaid blaze blaž blažej blažena blerim blerina blerta blessing bliss blossom
bluette bluford bláey blædís blængur blær blævar blín blíða blómey bo boaz bob boban bobba bobbi
bobbie bobby bobbye bobur bode bodhi bodil bodo boe boel boga bogdan bogdana bogdís bogey bogga
boghildur bogi boglárka bogomir bohdan bohdana bohumil bohumila bohumír bohuslav bohuslava bohuš
bojan bolatito bolden boleslav bolli boluwatife boma bonface boniface bonifacio bonifác bonita
bonnie bonny bonu booker boone borahan borataş borbála borg borgar borgdís borghildur borgný
borgrún borgúlfur borgþór borgþóra boris borja borris borut borys bose bosibori boss boston
botnía botond bouchra bowman boyce boyd boynak boysie bozbağ bozena bozerk boztaş boði boğatimur
bořivoj boštjan božena božica božidara božo brad braden bradford bradley bradly brady bradyn
braeden braedon braelyn braga braghildur bragi brahim braiden brain bram bramwel branch brandan
branddís brande brandee branden brandi brandie brandin brandon brandt brandur brandy brandyn
branislav branislava branka branko brannon branson brant brantley braulio bravin braxton brayan
brayden braydon braylen braylon brea breana breandan breann breanna breanne brecht breda bree
breeda breege breffni breki brencis brenda brendah brendan brenden brendon brenna brennan
brennen brennon breno brent brenton breonna bresi brestir bret brett bria brian briana brianda
brianna brianne brice brid bridger bridget bridgett bridgette bridgit bridie briek brielle brien
brieuc briget brigette brighid brigid brigita brigitta brigitte brijesh briley brilyant brimar
brimdís brimhildur brimi brimir brimrún brinda brinley brion brionna brisa bristol brit brita
britany britney britni britny britt britt-mari britt-marie britta brittaney brittani brittanie
brittany brittnay brittnee brittney brittni brittnie brittny britton brjánn brock broddi
broderick brodie brody brogan brona bronach bronagh bronislava bronson bronwen bronwyn brook
brooke brooklyn brooklynn brooks bror brown broņislava bruce bruna brunhild brunhilde bruni
brunilda bruno bryan bryana bryanna bryant bryce brycen brylee bryn bryndís brynfríður bryngeir
bryngerður brynheiður brynhildur brynja brynjar brynjólfur brynjúlfur brynlee brynleifur brynn
brynný brynsteinn bryntýr brynþór bryon bryony bryson bryton brá brák brândușa bríana bríanna
bríet brígida brími brăduț buck bucur bud budd buddie buddy budi buel buelah buell buena
buenaventura buffy buford buhari bujar bukurije bula bulah bulunç buna bunk bunmi buraid burak
burakhan burckhard burcuhan burdette buren burgess burghard burim burk burkard burke burkhard
burkhardt burkney burkni burl burleigh burley burnell burnett burney burnice burnie burns burr
burrel burrell burt burton burç busara bush busisiwe buster butch butler buyrukhan buşra bylgja
bynum byrd byrdie byron bystrík bálint bára bárbara bárður bärbel bæring bæringur bæron béatrice
béatrix béla bénédicte bérengère bérénice bíbí bína bóas bóel bói bót bóthildur bótólfur börje
börkur börteçin böðvar bøje børge búi búri büget bünyamün büreyre büşranur bănel bērends
bērtulis błażej břetislav bəhlul bəhram bəhruz bəkir bənövşə bəşir cabbar cabir caddie cade
caden cadence cael caesar caetana cagak cager cahal cahan cahangir cahir cahya cahyadi cahyanto
cahyo cahyono caiden cailin cailum cailyn cain caio cait caitlin caitlyn caitlynn caitriona
caius cajsa caket cakrabirawa cakrabuana cakrajiya cakrawala cakrawangsa cal calcedonio caldonia
cale caleb calebe caleigh calhoun cali calista calisto calixta calixto calla callan calleigh
callie callum calogero calum calvin calvince cam cambria camden camelia cameron cami camil
camila camilla camille camillo camillus camilo camisha cammie campbell campo camren camron
camryn can canal canan canberk candace candela candelaria candelario candelas candeniz candi
candice candida candido candis candra candrakanta candy candyce canfeza cangür canice cannie
cannon cannur canseven cansin cantemir cantez canur canyon caoilfhionn caoimhe caoimhin caolain
caolan caomhan cap capa capitola cappie caprice captain capucine cara caragh caraka caren carey
cari caridad carie carin carina carine carisa carissa carita carl carl-heinz carl-johan carla
carlee carleen carleigh carlene carleton carley carli carlie carlijn carlisle carlito carlo
carlos carlota carlotta carlton carly carlyle carlyn carma carmel carmela carmelita carmella
carmelo carmen carmenza carmina carmine carminho carnell caro carol carola carolann carole
carolee carolien carolin carolina caroline carolyn carolyne carolynn caron carra carren carri
carrie carrol carroll carry carsen carson carsten carter carub cary caryl caryn cas casandra
case casemiro casen casey cash casian casiana casie casimer casimir casimiro cason caspar casper
cass cassandra cassidy cassie cassius cassondra caswell cataleya catalina catarina caterina
cathal catharina catharine catherina catherine catheriona cathern cathey cathi cathie cathleen
cathrin cathrina cathrine cathriona cathryn cathy catia catina catinca cato catrin catrina
catrine catrinel catriona catur caturangga cauã cauê cavad cavid cavit cawisadi cawisono cawuk
cayadi cayden caydence cayetana cayetano cayla caylee cazimir ceara ceasar cebesoy cebrián
cecelia cecep cecil cecile cecilia cecilie cecilija cecilio cecille cecily cecilía cecília
cedide cedric cedrick cedrin ceferino ceil celal celena celene celesta celeste celestia
celestina celestine celestino celia celie celilay celina celinda celine celso cem cemal
cemalettin cemani cemeti cemil cemiyle cemplunk cena cenan cengiz cengkal cengkir centa centrine
ceola cephus cerasela cercis cesar cesare cetin cevale cevheri ceyhun ceyhunə ceyla ceylin
ceylon ceyran cezar cezara cezary cezayir chaaya chabane chace chad chadd chadrick chadwick
chaifah chaim chaitaly chaitanya chaiwut chaka chakradev chakradhar chakrika chalisa chalmer
chalmers chamali chaman chameli champ champak chana chanakya chance chancey chanchal chancy
chanda chandani chandler chandra chandran chandresh chanel chanelle chaney chanez changaz chanie
chanikan chaniya channie channing chantal chante chantel chantelle chanya charan charis charissa
charisse charita charity charla charle charlee charleen charlene charles charlesh charley
charlie charline charlize charlott charlotta charlotte charlottie charls charlsie charlton
charly charmaine charo charolette charos charvi chas chase chashida chasity chasmum chastity
chatresh chatura chauncey chauncy chausiki chavvi chawin chawish chaya chayanin chayapat chaz
che chebet chege chelangat chelo chelsea chelsey chelsi chelsie chelsy chema chepkemoi chepkoech
chepkorir cher cheragh cherelle cheri cherie cherif cherilyn cherise cherish cherith cherotich
cherrelle cherri cherrie cherry cherryl cheruiyot cheryl cheryle cheryll chesley chessie chester
chestina chet cheusi cheyanne cheyenne chi chiamaka chiara chibuzo chidimma chigozie chijioke
chimere chin china chinedu chinelo chinyere chip chipukizi chiquita chiraz chita chizoba chloe
chloie chloé chloë chlóe chris chrissie chrissy christ christa christa-maria christabel christal
christeen christel christelle christen christena christene christer christi christiaan christian
christiana christiane christianne christie christin christina christine christion christl
christof christofer christoffer christop christoper christoph christophe christopher christos
christy chrystal chucho chuck chuki chukwudi chukwuemeka chus chuy chyna chynna châu cian cianan
ciaobella ciara ciaran ciarra ciarrai cicely cicero cici cielo ciera cierra cihan cihandide ciji
cilla cilli cillian cilly cinda cindi cindoruk cindy cinnamon cinta cinthia cinthya cintia
cinzia ciprian cipriana cipriano ciriaco ciril cirillo cirino cirkeline ciro ciríaco citlali
citlalli citra claas clabe claes claiborne clair claire claire-lise clara clarabelle clarance
clare clarence claribel clarice clarinda clarine clarisa clarissa clarisse clark clarke clarnce
clas classie claud claude claudette claudia claudie claudina claudine claudio claudiu claudius
claudy claus claus-dieter claus-peter clavs clay clayton clearence cleave cleda clelia clell
clella clem clemence clemencia clemens clement clemente clementina clementine clemie clemma
clemmie clemon cleo cleola cleon cleone cleopatra cleophas cleora cleta cleto cletus cleva cleve
cleveland clevie clide cliff cliffie clifford clifton clint clinton cliodhna cliona clive
clodagh clodomiro cloe clora clorinda clothilde clotilda clotilde clovis cloyd cloé clyda clyde
clydie clytie clàudia cláudia cláudio cläre clémence clément clémentine clímaco coby codey codi
codie codin codrin codrina codruț codruța cody coen cohen colbert colby cole coleen coleman
coleton coletta colette coley colie colin coline colins colleen collette collie collier collin
collince collins collis colm colman colomba colon colonel colt colten colter colton coluccio
colum columba columbia columbus colvin comfort commodore con conal conall conan conard
concepcion concepción concepta concetta concha conchita conchur conleth conley conn connell
conner connie connor conny conor conrad conradin conrado consolata constance constant constantin
constantina constantine constantino constanza constanze constança constanța consuela consuelo
contina conway coolidge cooper cora coraima coral coralia coralie coraline corbett corbin cord
corda cordaro cordelia cordell cordella cordero cordia cordie cordula corean corene corentin
coretta corey cori corie corina corine corinna corinne coriolano corliss cormac cormack
corneille cornel cornelia cornelio cornelious cornelis corneliu cornelius cornell cornie corona
corrado corrie corrina corrine corry corsin cortez cortney corvin corwin cory cosima cosimo
cosmas cosme cosmin cosmina cosmo costache costantino costanzo costel costin coty council
courteney courtland courtney coy coşkun coşqun craig crawford creed crenguța creola crescencia
cressie crete crin crina cris crissie crissy crista cristal cristea cristen cristhian cristhofer
cristi cristian cristiana cristiano cristin cristina cristine cristián cristobal cristofer
cristofor cristopher cristy cristóbal crockett cruz crysta crystal csaba csilla csongor ctibor
ctirad cuba cuheyna cullen cuman curdin curley curro curt curtis curtiss custodia custodio
cvetka cvetko cydney cyndi cyntha cynthia cyprian cyprián cyriel cyril cyrill cyrille cyrus
czeslaw cándida cándido cátia cäcilia cäcilie cécile cédric célestin célestine célia célina
céline césar côme cümşüd cüneyit cýrus călin cătălin cătălina cəlal cəlil cəmalə cəmil cəmilə
daamin daan daanish daanyaal daawood dabbah dabir dabney dace dacian daciana dacin dadap dadi
dafina dafne dag dagbjartur dagbjörg dagbjört dagel dagfari dagfinnur dagfríður daggeir daggrós
dagheiður daghfal dagmann dagmar dagmara dagmey dagny dagný dagnýr dagobert dagoberto dagrún
dagur dagþór dahiana dahlia dai daiana daiga daija daijah daina dainess dainis dainius daire
dairine dairo daisey daisha daisie daisy daisye daiyaan daja dajana dakhil dakoda dakota dakotah
daksh daksha dakshesh dalaja dalan dalbert dalbir daldís dale daler daley dalia dalibor dalila
dalili dalima daliman dalimin daliono dalkılıç dalla dallas dalli dallilja dallin dalmann dalmar
dalmas dalrós dalton dalvin dalía damar damarcus damari damarion damaris dameer dameon damian
damiano damien damienne damife damijan damini damion damir damián damjan damjana damlanur damon
damond damu damurah damyanti dan dana danae danang dancan dancun dandre dane daneen danelle
danelíus danette daney danfríður dangelo danheiður danhildur dani dania danial danica daniel
daniela daniele danielius daniella danielle daniels danijel danijela danika danilo danique
danish daniswara danita danitza danival danièle daniël danjuma dann danna dannie danniel
dannielle danny danson dante danu danuja danuta danuše dany danyel danyell danyelle danía daníel
daníela daníella daníval danış daphne daphné daquan dara daragh darain darby darci darcie darcy
dardan darell daren daria darian dariana dariati darien darija darijan darika darimin darin
darina darinka dario darion daris darius dariusz darja darko darl darla darleen darlene darline
darling darlyne darmaji darman darmana darmanto darnell darold daron darpan darragh darran
darrel darrell darren darri darrian darrick darrien darrin darrion darrius darron darry darryl
darryle darryll darryn darsh darsirah dartono daru daruna darvin darwin darwyn dary daryani
daryl daryle daryn darío daríus dasa dashawn dasia dastageer daud daudi daulton daunte davante
dave davey davi davian david davida davide davie davin davina davion davis davnet davon davonta
davonte davor davorin davy davíð dawid dawn dawna dawne dawson dawud dax daxton dayamai dayami
dayana dayanara dayar dayita dayle dayna dayne dayse dayton dayyaan daðey daði daðína dağistan
deacon deaglan dean deana deandra deandre deane deangelo deann deanna deanne deante dearbhail
dearbhaile dearbhla deasia deb debbi debbie debbra debby debera debi debora deborah deborrah
debra debrah debroah debóra decebal declan dedra dedric dedrick dee deeann deedee deegan deena
deepa deetta deforest deha deiby deicy deidra deidre deion deirbhile deirdre deisy deividas deja
dejah dejan dejon dejuan del delaney delano delbert delcie delfina delfino delfín delia deliah
delil delila delilah delina delinda delisa dell della dellar delle dellia dellie delma delmar
delmas delmer delmus delois delora delores deloris delos delpha delphia delphin delphine delsie
delta delton delvin delwin dema demarco demarcus demario demarion demeter demetra demetri
demetria demetric demetrio demetrios demetrius demi demi-lee demi-leigh demian demilade
demirbüken demiriz demirok demiryürek demond demonte dempsey demus dena dendý deneen denese
denice deniis denine denis denisa denise denisha denisse denita deniz denizalp denkel dennie
dennis denny denton denver denzel denzell denzil deníel deon deondre deonta deontae deonte
dequan derald dereck derek dereon deric derick derik derkay derl derly dermot dermott deron
derrek derrell derrick derval dervilla dervla derwin derya deryanur deryl desean deshaun deshawn
desi desiderio desirae desiree desirée desmond despina dessa dessie destany destin destinee
destiney destini destiny destry detlef detlev dev devan devansh devante devaughn deven devi
devika devin deviner devon devonta devontae devonte devyn deward dewayne dewey dewi dewitt dex
dexter deyanira dezider dezső dezzie değer değmeer dhriti dhruv diah diallo diamond dian diana
dianah diandra diane diann dianna dianne diar diarmaid diarmuid dicie dick dickie dickson dicy
dida didda didier didina diederik diedrich diego dierk dieter diethard diethelm diether dietlind
dietlinde dietmar dietrich digdaya digna dijana dijon diken dilan dilara dilarə dilavər dilcan
dilder dildora dilfeza dilhuş dilja diljá dillan dillard dillie dillion dillon dilnoz dilnur
dilsitan dilşad dilşat dimas dimaz dimitri dimitrina dimitrios dimmblá dimmey dimple dina dinah
dincer dinda dinis dink dino dinu dinçkol dinçsü diogo dion dione dionicio dionigi dionisia
dionisio dionne dionte dionýz dipa dipta dirican dirja dirk dirlik dismas dita ditmar ditte
dittmar divan divya dixie dixon diya diyor diyora diána diðrik diāna djamel djuana djuna dmitri
dobromila dobroslav dobroslava doc dochia docia dock doctor dodo dofri dogan doina dola doll
dolli dollie dolly dollye dolores doloris dolph dolphine dolphus dolun dom domagoj domantas
domas domen domenic domenica domenick domenico domhnall dominga domingo domingos dominic
dominick dominik dominika dominique dominque dominyka dominykas domitila domnica domonique don
dona donaciano donagh donal donald donat donata donatas donatella donatello donato donavan
donavon dondre donell donia donie donita doniyor donn donna donnacha donncha donnell donnie
donny dono donough donovan donta dontae donte dora doralisa dorathea dorathy dorcas dorcus
doreen dorel dorene doretha doretta dori dorian doriana dorien dorin dorina dorinda dorine
dorinel doris dorit dorita dorla dorle dorli dorman dorota dorotea doroteja dorotha dorothe
dorothea dorothee dorothy dorothée dorottya dorr dorris dorsey dorte dortha dorthe dorthea
dorthey dorthy doru dorukhan dosha doshia doshie dosia doss dossie dot dottie dotty doug douglas
douglass dounia dove dovie dovilė dovud dovydas dow doyinsola doyle dozier doğanalp doğannur
doğanşah doğuhan draga dragan dragana dragica drago dragoș dragutin drahomír drahomíra drahoslav
drahoslava drajat drake drauma draumey draupnir draven dražen dreki drema drengur drew dries
drilon drita driton droplaug drucilla drury drusilla drífa drótt dröfn duane duard duarte dubán
ducu dudley duff dufgus dufþakur dugfús duha duilio duje duke dulce dulcie duma dumisani
dumisile dumitra dumitrana dumitru duncan dunia dunja dunyo durab duracan durante durdali
durdona durell durgadin durmuşali durna durodola durrell dursadiye dursun duruk duruöz durward
durwood dusan dustan dustin dusty dustyn duuk duván duwayne duyguhan duyên dušan dušanka dvalinn
dwain dwaine dwan dwane dwayne dwi dwight dwyane dyan dylan dylano dyllan dylon dymphna dympna
dzidra dzintars dzintra dániel dávid dáša dæja débora déborah dénes désiré désirée día díana
díanna díma dís dísa dísella díómedes dóa dómald dómaldi dómaldur dómhildur dónald dónaldur dór
dóra dórey dóri dóris dórothea dórótea dóróthea dósóþeus dögg dögun dölensoy döner dönməz dörte
dörthe dúa dúfa dúi dúna dúnn dündaralp dünya dünyamalı dürdanə dürnisə dürrüşehvar dýrborg
dýrfinna dýri dýrleif dýrley dýrmundur dýrunn dārta dāvis dũng dương eadaoin eamon eamonn ean
eanna earl earle earlean earlene earley earlie earline early earnest earnestine eartha easter
easton eathel eavan eba ebb ebba ebbe ebbi ebbie eben ebeneser ebenezer eber eberg eberhard
eberhardt ebert eboni ebonney ebony ebuakil ebuka ecaterina ecegül ecemiş echo eckard eckart
eckehard eckhard eckhardt eckhart ecrin ed eda edaviye edd edda eddah eddie eddy edel edelbert
edelgard edelmira edelmiro edeltraud edeltraut edeltrud eden eder edgar edgaras edgard edgardo
edgars edgübay edhitha edi edie edier edil edilberto edilma edilon edilson edin edina edinah
edinson edison edisson edit edita edith editha edla edmon edmond edmonia edmund edmundo edmunds
edna ednah edoardo edon edona edouard edra edrie edris edsel edson edu eduar eduard eduarda
eduardo eduards edvard edvardas edvin edvinas edvīns edw edwar edward edwardo edwin edwina edyth
edythe edílon edīte eelis eemeli eemil eerik eero eesaa eesha eetu eeva efe efemía effa effie
efil eflâtun efrain efraím efraín efrem efren efrén efser eftimia eftimie ega egbert egedía
egenur eggert eggrún eggþór egidijus egil egill egils egla eglė egon egzon egzona ehan
ehrenfried ehrentraud ehrhard ehsaas ehsan eider eidvilė eija eijaz eik eikar eila eileen eilis
eilish eilífur eimantas eimear eimer eimhear einar einari einbjörg eindís einer einey einfríður
einhildur einir eino einrún einvarður einína einþór eir eira eiravati eirdís eirfinna eirik
eirný eiríka eiríkur eirún eitel eithan eithel eithne eivin eivind eivor eiðar eiðný eiðunn
eiður eja ejaz ejlaal eka ekaja ekalinga ekani ekansh ekanta ekantika ekapad ekaraj ekaterina
ekavir ekbal ekber ekene ekiya ekkehard ekkehart ekmel eko ekow ekrem ekta ekundayo ekundu el
el-amin ela eladio elaf elaina elaine elam elamiye elana elariz elayne elba elberg elbert
elberta elbridge elby elcira elcy elda eldar eldbjörg elden elder eldey eldgrímur eldjárn
eldlilja eldmar eldon eldora eldred eldridge eldrún eldur eldór eldəniz elea eleanor eleanora
eleanore elease eleazar electa eleina elektra elemér elena elenborg eleni elenor elenora elenore
elentínus eleodoro eleonor eleonora eleonore eleonóra eleuterio elex elfa elfar elfi elfida
elfie elfreda elfrieda elfriede elfráður elfur elgie elgin elgün elhan eli elia eliabeth
eliakimu elian eliana eliane elianna elias elick elida elie eliecer elien eliette eliezer elif
elifnur eliga eligah elige eligia eligio elihu eliisa elijah elimar elin elina elinborg eline
elinor elinore elinór elio eliona eliot eliott elis elisa elisabet elisabeta elisabete elisabeth
elisabetha elisabetta elisaveta elise eliseo elisha elissa elita eliud eliza elizabet elizabeta
elizabete elizabeth elizah elizbeth elize elizebeth eliáš eliška elka elkana elke elkin ell ella
elladio ellamae ellar elle ellen eller ellert ellery elley elli elliana ellie ellinor elliot
elliott ellis ellisif ellison elliði ellsworth ellwood elly ellyn ellín ellís ellý elma elman
elmar elmer elmeri elmidar elmina elmir elmira elmire elmo elmore elmyra elmārs elməddin elna
elnarə elnora elnur elnurə eloah elodia elodie elof eloi elois eloisa eloise elon elona elonzo
elosy elouise eloy eloá eloísa eloïse elphas elpidio elroy els elsa elsabet elsbeth else
elsebeth elsevər elsie elsworth elsy elsí elsý elta elton elturan eluh elva elvan elvana elvar
elver elvera elvi elvia elvie elvin elvina elvira elvire elvis elvy elvíra elvý elvīra elwanda
elwin elwira elwood elwyn elxan ely elyas elyse elyssa elza elzada elzbieta elzie elzy elçin
eléa eléna eléonore elí elía elíana elías elíeser elímar elín elína elínbergur elínbet elínbjörg
elínbjört elínborg elíndís elíngunnur elínheiður elínmundur elínrós elíná elínór elírós elís
elísa elísabet elísabeth elöve elīna elşad elşən elżbieta ema emal emaline eman emanoil emanuel
emanuela emanuele emanuella emanuelly emanuil emanúel emas ember embla embrek embuh emeka emelia
emelie emelina emeline emely emelyne emelía emelíana emelína emer emerald emeralda emerson emery
emese emett emiel emigdio emil emilce emile emilee emilia emilian emiliana emiliano emilie
emilien emilija emilio emilis emilly emilse emily emilía emilíana emilíanna emilý emin emina
emine emir emiro emirşan emit emiş emma emma-louise emmaculate emmah emmalee emmaline emmanuel
emmanuelle emmanúel emmer emmerich emmet emmett emmi emmie emmit emmitt emmons emmy emmý emogene
emong emory emperatriz empluk emran emre emrullah emry emy emília emý emīlija emīls ena enar
encarna encarnacion encarnación encarnita enda endah endra endre endrit ene enea eneka enes
enfes engelbert engilbert engilbjartur engilbjört engiljón engill engilráð engilrós engin
enginiz engla enid enika enikő eniola enis enith enja enna ennio ennis enno enoch enock enok
enola enos enrico enrika enrique enriqueta ensar ensari ensio enteng enver enya enzi enzio enzo
enóla eoghan eoin eola eowyn ephantus ephraim ephram ephriam epifanio eppie epsie era eral
eraldo erasmo erasmus erastus eraycan erbay erbil erby ercan ercihan erdal erdemer erdibay
erdmute erdogan erdursun erem eremia eren erenalp erensoy eres ergener erginel ergönül ergül
ergün erhard erhardt eric erica erich erick ericka erie erik erika erikas erin erina erinçer
erion eris eriş erkan erkinel erkki erksoy erkılıç erla erland erlar erle erlen erlendur erlene
erlinda erline erling erlingur erlín erma ermanis ermanno ermenegildo ermes ermina ermine
ermutlu erna ernest ernestas ernestina ernestine ernesto ernests ernestó ernie ernir ernst
ernst-august ernst-dieter ernst-otto erny ernő erol eron eroğul erpur errol ersel erseç ertan
erten ertuncay ertün erva ervaniye ervin erving ervín erwan erwin eryk erykah eryn eryıldız
erzsébet eröz erşat esa esau esben esco esekíel esenbay esengün esentürk esequiel esfandyar
eshan eshana esi esila esja esjar esker eskil eskinalp esko eslemnur esley esma esmanperi
esmarelda esmee esmeralda esmira esmée esna esneider esparta espartaco espen esperanza
espiridión esra essa essence essex essi essie esta esteban estefan estefani estefania estefany
estefanía estel estela estell estella estelle ester estera esteri estes estevan esther estiawan
estie estill estiono estiva estiven eston estrella esupofo eszter eta etela etelka etelvina etha
ethan ethel ethelbert ethelene ethelyn ethen ether ethie ethna ethne ethyl ethyle etibar etienne
etiqad etizaaz etna etta etter ettie ettore euan eudora eufemia eufemía eufrosina eugen eugene
eugenia eugenie eugenio eugine eugène eugénia eugénie eula eulah eulalia eulalie eulogio eulália
euna eunan eunice eunika euphemia eura eusebia eusebio eusebiu eustace eustaquio eustațiu
eutimio eutropio eva eva-lena eva-maria eva-marie evald evaldas evalena evaline evalyn evalyne
evamaria evan evance evander evangelia evangelina evangeline evangelista evangelos evanghelina
evans evaristo evcimen evde eve evelena evelia evelien eveliina evelin evelina eveline evelio
evelyn evelyne evelynn evelína ever everet everett everette everline everlyne evert evertt
evette evey evfemía evgenía evi evia evie evija evita evlalía evon evonne evrim evrimer evy
evíta ewa ewald ewan ewart ewatomi ewelina ewell ewin ewing exa exequiel exie ey eyberg eybjörg
eybjört eydan eydís eyfríður eygerður eygló eyhildur eyja eyjalín eyjólfur eylaugur eyleif
eyleifur eylín eymar eymundur eyríkur eyrós eyrún eysteinn eyvar eyveig eyvindur eyvör eyyub
eyyüp eyþrúður eyþór eyþóra ezekiel ezell ezequiel ezgin ezgütekin ezio ezra ezzard eðna eðvald
eðvar eðvarð eşim eşref faas faber fabia fabian fabiana fabien fabienne fabio fabiola fabián
fabiënne fabrice fabricio fabrisíus fabrizia fabrizio facundo fadekemi faderera fadil fadile
fadime fadıla fae fahari fahmi fahrullah fainche faiq fairy faisa faith faizah faizan faize
falak falan falgeir falguni falk falko fallon falon falur fami familə fanaka fancy fannar
fannberg fanndís fanney fanngeir fanni fannie fannlaug fanny fannye fanný faqid farah faraj
faraja farangiz faras fares farhan farhiya farhod farhunnisa farid farida farijika fariq faris
fariz fariza faron farouk farrah farrell farris faruk farzona fate fathonah fatigül fatih fatiha
fatihə fatima fatime fatimə fatinur fatma fatmanur fatmir fatmire faton fatteh fatuma faustas
faustino fausto fawn fay faye fayette fayize fazil fazli fazul feargal fearghal febe febi febrún
fed fedde fedele feden federica federico federigo fedor fehim fehintola fehmiye feisal felecia
felice felicia feliciana feliciano felicidad felicie felicien felicitas felicity feliks feline
felipa felipe felisa felisha felista felister felistus felix felizitas fella felton fem fema
femke fengur fenna fenne fenni fenrir fenton ferahdiba ferat feraye ferd ferdi ferdinand
ferdinando ferdínand feremez ferenc fergal fergus ferhan ferhat feriel ferihan ferinaz ferman
fermuta fermín fern fernand fernanda fernande fernando ferne ferney ferny ferre ferrell ferris
fersan fertram feruza feryas ferzi festus fetullah feyha feykir feyruz feyzin feza fiachra
fiamma fibikemi fidan fidaye fidel fidela fidelia fidelis fidelma fidencio fidvi fielding fien
fiene fiifi fikayomi fikrət fildan filip filipa filipe filippa filippo filippus filippía filipía
filit filiz filofteia filomena filoména fimar finbar finbarr finian finis finley finn finna
finnbjörg finnbjörk finnbjörn finnboga finnbogi finnborg finndís finnegan finney finnfríður
finngeir finnjón finnlaug finnlaugur finnrós finnur finnvarður finola fintan fiodor fiona fionan
fionna fionntan fionnuala fionnula fiorella fiorenzo fiorino firdavs firdevis firdovsi firman
firmin firudin firuzə firəngiz fisher fisnik fitan fitim fitnat fito fitore fitria fitriani
fitzgerald fitzhugh fiyaz fizzə fjalar fjalldís fjarki fjolla fjóla fjólar fjólmundur fjölnir
fjölvar fjörnir flamur flannan flavia flavie flavio flaviu fleda fleet fleeta flem fleming
flemming fleta fletcher fleur flint flo floare floarea flonnie floor floortje flor flora
florance flore florea florence florencia florencio florene florent florentin florentina
florentine florentino florența floretta florian floriana floriane florica florida floridor
florie florim florin florina florinda florine floris florián florrie flosi flossie floy floyd
flurin flurina flynn flóki flóra flórent flóvent foch fodil folashade folda folke folker folkert
folu fonda ford forest forni forrest fortunata fortunato forum fossmar foster fotima fount
fouzia foy frado fran franc franca france frances francesca francesco franchesca franci francia
francies francina francine francis francisc francisca francisco franciscus franciska
francisquita franciszek franck franco francoise francy franjo frank frank-michael frank-peter
franka frankie franklin frankline franklyn franklín franky frans fransiska františek františka
franz franz-josef franz-peter franz-xaver franziska françois françois-xavier françoise frančišek
fraser frauke frazer frazier fred freda freddie freddy frede frederic frederica frederick
fredericka frederico frederik frederika frederike frederikke frederique fredi fredie fredo
fredric fredrick fredrik fredrika fredy freeda freeman fregn freia freida freja fremont french
fresia freya freybjörn freydís freygarður freygerður freyja freylaug freyleif freymar freymundur
freymóður freyr freysteinn freyviður freyþór fricis frida fridah fridolin fridrich frieda
friedbert friedemann frieder friedericke friederike friedhelm friedhilde friedhold friedl
friedlinde friedo friedrich friedrich-karl friedrich-wilhelm friend frigg frithjof fritz
friðberg friðbergur friðbert friðbjörg friðbjörn friðbjört friðborg friðdís friðdóra friðey
friðfinna friðfinnur friðgeir friðgerður friðjón friðjóna friðlaug friðlaugur friðleif
friðleifur friðlín friðmann friðmar friðmey friðmundur friðný friðrik friðrika friðrikka friðrós
friðrún friðsemd friðsteinn friður friðveig friðvin friðþjófur friðþór friðþóra frode froilán
frona fronia fronie fronnie frosti frostrós frusina fryderyk frán fránn frár frédéric frédérique
frímann fríða fríður fróði fróðmar fróðný fulgencio fuller fulton fulvio fuma fumiko funi fura
furman fuzayl fuzuli fylkir fynn fábio fáfnir fálki fátima félicie féline félix fía fídes fífa
fífill fólki fönn fúsi fügen füzuli fəhmin fərahim fərda fərhad fərid fəridə fərman fərqanə
fərrux fəxri fəxriyyə fəxrəddin fəyyaz fəzail gabe gabel gabi gabin gabino gabor gabriel
gabriela gabriele gabrielius gabriella gabrielle gabrielly gabriël gabríel gabríela gabríella
gaby gada gadang gading gaduh gael gaetano gagan gage gaia gaida gaige gail gaiman gaines
gaither gaja gal gala galak galang galar galasso galdur gale galen galih galilea galina galiono
galip gallego galo galuh galur galvarino gamalíel gaman gamani gamanto gambira gamblang gambo
ganda gandewa gandi ganep ganga gangsa gangsar gani ganimete ganiye ganjaran gannon gantar gara
garan garang garda gardner garech gareth garett garey garfield garibaldi garima garland garner
garnet garnett garold garpur garret garreth garrett garri garrick garrison garry garth garvan
garvin gary garðar gaspar gaspard gaspare gasper gasti gaston gastone gastón gathoni gatis gatot
gatra gauge gaui gauja gaukur gaurang gaurangi gaurav gauri gaurika gautam gautami gauthier
gauthildur gauti gautrekur gautur gautviður gavan gaven gavin gavyn gawati gay gayathri gaye
gayla gayle gaylen gaylene gaylon gaylord gaynell gazel gazmend gaël gaëlle gaëtan gašpar
gbadebo gbolahan gbowoade geanina gearld gearldine gearoid geary gebhard gediminas gedion gee
geert geetika gefjun gefn geir geira geirarður geirbjörg geirdís geirfinna geirfinnur geirfríður
geirharður geirhildur geirhjörtur geirhvatur geiri geirlaug geirlaugur geirleifur geirlöð
geirmundur geirný geirríður geirröður geirrún geirtryggur geirvaldur geirólfur geirþjófur
geirþrúður geisli gejza gelengül gellir gelsomina gelu gema gemma gena genaro gencaslan gene
general genesis geneva genevieve geneviève genevra genie gennaro gennie geno genovefa genoveva
genta gençay gențiana geo geoff geoffrey geoffroy geofrey georg georganna george georgeann
georgeanna georgel georgene georges georgeta georgetta georgette georgia georgian georgiana
georgiann georgianna georgie georgina georgine georgios georgía geovanni geovanny gerald
geraldine geraldo geralyn gerard gerarda gerardine gerardo gerardus geraud geray gerd gerda
gerdi gereon gerfried gergely gergő gerhard gerhardt gerhart gerhild geri gerlind gerlinde
germain germaine german germana germán gernot gero gerold gerolf geronimo gerrard gerri gerrit
gerry gerson gert gerta gertha gerti gertie gertraud gertraude gertraut gertrud gertrude
gertrudis gertrúda gervasio gerwin gery gerða gerðar gerður gerónimo gesa gesare gesche gesine
gestheiður gestný gestrún gestur geta gethera getrude geza ghaalib ghaazi ghaffaar ghafoor
ghaith ghalib ghaliyati ghanee ghanem ghani ghannam ghasaan ghauth ghawth ghayoor ghazalan
ghazanfar ghazanfer ghazawan ghazi ghazzal ghenadie gheorghe gheorghiță gherghina ghilas
ghislain ghislaine ghiyaath ghiyath ghiță ghufran ghulaam ghulam ghunayn ghusharib ghusun
ghutayf gia giacinto giacobbe giacomo giada giampaolo giampiero gian gian-luca giana giancarlo
gianfrancesco gianfranco gianina gianluca gianluigi gianmarco gianna gianni gianpaolo gianpietro
gibson gicu gică gideon gidget giedrius giedrė giel giesela gifford gifty gigi gijs gil gilang
gilbert gilberte gilberto gilda gildardo giles gilford gilles gillian gillie gillis gillý gilma
gilman gilmar gilmer gilmore gils gilslaug gina ginette ginger ginny gino gintarė ginyas
gioacchino gioachino gioele gioffre gioia gion gionata giorgia giorgian giorgiana giorgio giosuè
giovani giovanna giovanni giovanny girik girindra girish girolamo girtha gisa gisbert gisela
gisele giselle gislinde gisselle gissunn gissur gisèle gitau githinji gitonga gitta gitte giulia
giuliana giuliano giulietta giulio giuseppa giuseppe giuseppina giustino giz gizela gizella
gizem gizur gjaflaug gjúki gladis gladstone gladyce gladys glauco glen glenda glendon glendora
glenn glenna glennie glennis glenwood glenys glinda gloria gloría glover glynda glynis glynn gló
glóa glóbjört glódís glóey glói glóð glúmur gneisti gná gnúpur gnýr goda godelieva godelieve
godfrey godofredo godwin goebel goffredo gohar golda golden goldia goldie goma goncafer goncalo
gonzalo gonçalo gopal goran gorazd gordan gordana gorden gordon gorge gorm gottfrid gottfried
gotthard gotthilf gotthold gottlieb gottlob gottskálk gottsveinn governor goyo goði goðmundur
grace gracelyn gracia graciana graciano gracie graciela grady graeme grafton graham grainne
grani grania grankell grant granville graves gray grayce graydon grayling grayson grazia
graziano graziella grazyna grațian grațiana grațiela greca grecia greco green greene greet greg
grega greger gregg greggory gregor gregoria gregorian gregorio gregory grein greipur greppur
gret greta gretar gretchen grete gretel grethe gretl gretta grettir greyson gricelda griet
grieta griffin griffith grigore grisel griselda grit gro grove grover grzegorz grégoire grégory
grélöð grét gréta grétar gríma grímar grímey grímheiður grímhildur grímkell grímlaugur grímnir
grímur grímólfur grímúlfur gróa grēta guadalupe guarino gudrun gudula guenter guenther guglielmo
gugu gugulethu guido guilford guilherme guillaume guillermina guillermo guiomar guiseppe gulab
gulfaam gulfam gullbrá gullveig gullý gulshan gulzar gumercindo gumi gumma gun gun-britt gunar
gunbir gunborg gunda gundel gundhild gundi gundolf gundula guneet guney gunhild gunilla gunita
gunn gunnar gunnberg gunnbjörg gunnbjörn gunnbjört gunnborg gunndís gunndór gunndóra gunnel
gunnella gunner gunnfinna gunnfríður gunngeir gunnhallur gunnharða gunnheiður gunnhildur
gunnjóna gunnlaug gunnlaugur gunnleif gunnleifur gunnlöð gunnröður gunnrún gunnsteinn gunnur
gunnvaldur gunnveig gunnvör gunnólfur gunnóli gunný gunnþór gunnþóra gunnþórunn gunta guntars
gunter gunther guntis guntram gunvor gunārs gurli gurney gurrý gus guss gussie gust gusta
gustaaf gustaf gustas gustav gustave gustavo gustavus gustaw gusti gustie gustáv gusztáv guthrie
gutti guttormur guus guusje guy guðberg guðbergur guðbjarni guðbjartur guðbjörg guðbjörn
guðbjört guðborg guðbrandur guðdís guðfinna guðfinnur guðfreður guðfríður guðgeir guðjón guðjóna
guðlaug guðlaugur guðleif guðleifur guðleikur guðlín guðmann guðmar guðmey guðmon guðmunda
guðmundur guðmundína guðni guðný guðráður guðríður guðröður guðrún guðsteina guðsteinn guðvarður
guðveig guðveigur guðvin guðþór gwen gwenael gwenaëlle gwenda gwendolen gwendoline gwendolyn
gwyn gwyneth gyda gylfi gyrðir gytis gytta gytė gyula gyða gyðja gyðríður gyöngyi györgy györgyi
győző gzim gábor gæfa gæflaug génesis gérald géraldine gérard géza gía gídeon gígja gígjar
gísela gísla gísley gísli gíslný gíslrún gíslunn gíslína gíta góa gógó gói gök gökay gökbudun
göken gökhan göknur gökperi göksev gökten gökçe gökçebalan gökçil göli gönen gönül göran
görgünay görklü görsev gösta göte götz gözel gözem gúa gústaf gústav gücal gül gülarə gülay
gülağa gülbala gülbani gülbeyan gülbiye gülcegün güldam gülder güldünya gülel gülenay güler
gülev güleğen gülfari gülfeza gülgen gülgüzel gülhisar gülinaz gülkadın güllühan güllər gülmira
gülmisal gülnar gülnarə gülnaz gülnaziye gülnur gülper gülsalın gülselin gülsen gülseren
gülsevil gülsiye gülsü gülsüm gültac gülten gülter gültəkin gülxar gülzadiye gülzar gülçe gülçin
gülçöhrə gülözge gülüs gülüstan gülüş gülşa gülşahin gülşeref gülşən gülər gümüştekin günar
günay günaydin günden gündüz gündüzalp günebakan güneri güngördü güngören günkurt günsel günser
günter günther günver günşen gürarda gürcüye gürelcem gürsal gürten güverçin güzey güçal güçlüer
güçyeter gýgjar gýmir gəray habib habiba habibe habibu habil haciali hacile hacıbəy hadassa
hadassah hadda haddi haddur haddý haden hadi hadicha hadija hadithi hadiza hadjer hadley hadrey
hadrien hafberg hafbjörg hafborg hafdís hafey hafgrímur hafiz hafliða hafliði haflína hafnar
hafni hafný hafrós hafrún hafsa hafsat hafshah hafsteina hafsteinn hafþór hafþóra hafıza hagalín
hagbarður hagbert hagen haiba haiden hailee hailey hailie hairyanto hajnalka hajo hakan hakeem
haki hakikat hakim hal halbert hale haleigh halenur haley hali halid halidun halie halil halim
halima halina halisi haliye hall halla hallbera hallberg hallbjörg hallbjörn hallborg halldís
halldór halldóra halle halley hallfreður hallfríður hallgarður hallgeir hallgerður hallgils
hallgrímur hallgunnur hallie hallkatla hallkell hallmann hallmar hallmundur hallný hallrún
hallsteinn hallur hallvarður hallveig hallvör hallþór halsey haluk ham hamar hami hamid hamilton
hamima hamis hamish hamisi hamiyet hamp hampton hampus hamsini hamza hamzah hana hanbiken handy
hanedan hani hania hanife hanim hanja hank hanna hannabel hannah hannchen hanne hanne-lore
hannele hannelore hannes hanney hanni hannibal hanno hanns hannu hanny hanora hans hans-adolf
hans-albert hans-bernd hans-christian hans-detlef hans-dieter hans-dietrich hans-eberhard
hans-erich hans-friedrich hans-georg hans-gerd hans-gerhard hans-günter hans-günther
hans-heinrich hans-helmut hans-henning hans-herbert hans-hermann hans-hinrich hans-joachim
hans-jochen hans-josef hans-jörg hans-jürgen hans-karl hans-ludwig hans-martin hans-michael
hans-otto hans-peter hans-rainer hans-rudolf hans-theo hans-ulrich hans-uwe hans-walter
hans-werner hans-wilhelm hans-willi hans-wolfgang hansa hansel hansford hansgeorg hansjoachim
hansjörg hansjürg hansjürgen hanson hanspeter hansruedi hanss hansueli hansultan hansína
haralamb haralambie harald haraldur harambee harbinaz hardana harden hardi hardie hardik hardin
harding hardy hari harijs harimurti harinakshi harini haris harish harita hariz harja harjasa
harjaya harjo harl harlan harland harlen harlene harley harlie harlon harlow harm harman harmon
harmony harnail harol harold haroldo haron harpa harper harrell harri harrie harriet harriett
harriette harris harrison harro harrold harry harrý harsana harsanto harsaya harsh harshil hart
hartaka hartana hartley hartmann hartmut hartmuth harto hartvig hartwell hartwig haruko harun
haruna harve harvey harvie harvy hasan hasbek hasel hasgül hashiki hasim haskell hasna hasret
hassan hassie hasso hasta hatem hatice hatima hatin hattie hauksteinn haukur haukvaldur hauwa
hauður hava havali haven havse hawa hawehindi hayali hayat hayden haydée hayel hayes haylee
hayleigh hayley haylie hayret hayrünnisa hays hayward haywood hazeem hazel hazelle hazen hazine
hazle hazrat heath heather heaven heba heber hebert hector hedda hedi hedvig hedviga hedvika
hedwig hedy hedí hege heide heide-marie heidelinde heidelore heidemarie heiderose heidi heidrun
heidy heike heikir heikki heiko heilmóður heimir heimo heiner heinfried heini heino heinrekur
heinrich heinz heinz-dieter heinz-georg heinz-gerd heinz-günter heinz-günther heinz-joachim
heinz-josef heinz-jürgen heinz-otto heinz-peter heinz-walter heinz-werner heinz-wilhelm
heinz-willi heisi heitor heiða heiðar heiðarr heiðberg heiðbert heiðbjörg heiðbjörk heiðbjört
heiðbrá heiðdís heiðlaug heiðlindur heiðlóa heiðmann heiðmar heiðmundur heiðný heiðrekur heiðrós
heiðrún heiður heiðveig hekima hekime hekla hekmet hektor helaine helan heleen helen helena
helene helfried helga helge helgi heli helinä heliodoro hella helle hellen hellena hellevi
hellmut hellmuth helma helmar helmer helmi helmtrud helmut helmuth helmút heloisa heloise
heloísa helvi helyn helén heléne helēna hema hemal hemang hemangini hemani hemi hemmert hence
henderson hendra hendri hendrik hendrikka henery henife henk henna henner henni hennie henning
henny henný henretta henri henric henrich henricus henrieta henrietta henriette henrik henrika
henrike henrikki henriks henrique henry henryk henríetta henrý hera heracleea heraclio heraldo
herb herbert herberto herbjörg herbjörn herbjört herborg herdis herdís herfinnur herfríður
hergeir hergerður hergill hergils heribert heriberto herjólfur herlaug herlaugur herleifur
herlinda herlinde herluf herma herman hermanis hermann hermann-josef hermanni hermelinda
hermenegildo hermes hermina herminda hermine herminia herminio hermon hermundur hermína hermóður
hernan hernando herney hernán herrmann herschel hershel hershell hersilía hersir hersteinn
hersveinn herta hertha heru hervar hervarður hervey hervin hervé hervör herwig heryanto
herþrúður hesbon hessie hester hesti hettie hetty heva heydər heyvetullah heyward hezekiah
hezniye hezron hezzie hicham hicran hidaya hidde hideo hidir hikmət hilah hilal hilario hilary
hilaríus hilayda hilbert hilda hildah hildar hildburg hilde hildegard hildegarde hildegart
hildegund hildegunde hildibergur hildibjörg hildibrandur hildigeir hildigerður hildiglúmur
hildigunnur hildimar hildimundur hilding hildingur hildir hildiríður hildisif hildiþór hildred
hildur hilkka hill hillard hillary hillery hillevi hilliard hilma hilmar hilmer hilmir hilton
hiltraud hiltrud himawan himinbjörg himri hind hindal hinet hinewai hinrich hinrik hinrika
hinrikka hipólito hiral hiram hiroshi hitesh hiçsönmez hjallkár hjalmar hjalmer hjalta hjalte
hjaltey hjalti hjarnar hjálmar hjálmdís hjálmey hjálmfríður hjálmgeir hjálmgerður hjálmrós
hjálmrún hjálmtýr hjálmur hjálmveig hjálmþór hjördis hjördís hjörfríður hjörleif hjörleifur
hjörný hjörtfríður hjörtur hjörtþór hjörvar hlaðgerður hleiðar hlini hljómur hlynur hlédís
hlégestur hlér hlíf hlífar hlín hlíðar hlíðberg hlökk hlöðmundur hlöður hlöðvarður hlöðver
hnefill hnikar hnikarr hoani hobart hobert hobson hocine hodari hoke holden holgeir holger
holland holli hollie hollis holly holm holmes holti homer homero honora honoré hoover hope
horace horacio horatio horațiu horea horia horst horst-dieter horst-günter horst-peter hortencia
hortense hortensia hortenzia horton horymír hosea hosie hosteen houcine houda houston howard
howell hoy hoyt hoàng hoşkadem hrafn hrafna hrafnar hrafnbergur hrafnborg hrafndís hrafney
hrafngerður hrafnheiður hrafnhildur hrafnkatla hrafnkell hrafnlaug hrafntinna hrafntýr hrannar
hrappur hraunar hraundís hredhaan hrefna hreggviður hreimur hreindís hreinn hreiðar hreiðmar
hringur hritik hrollaugur hrolleifur hrund hrvoje hrærekur hrímnir hróaldur hróar hróbjartur
hrói hrólfdís hrólfur hrómundur hróðgeir hróðmar hróðný hróðvar hróðólfur hrönn hrútur huban
hubbard hubert hubertine hubertus hudavent hudson huey hugberg hugbjörg hugbjört hugborg hugdís
hugh hughes hughey hughie hugi huginn hugleikur hugljúf hugo hugrún hugues huguette hugó huia
huld hulda huldah huldar huldrún huldís humaira humaiya humayra humberto humoyun humphrey hunalp
hung hunor hunt hunter hurbert hurican hurley hurşide hussein huston huxley huy huzaifa huzuri
hvannar hvönn hyltir hylur hyman hymen hynek hyrum hákon hákonía háleygur hálfdan hálfdán
hámundur hárekur hárlaugur hásteinn hávar hávarr hávarður håkan håkon håvard hængur hænir héctor
héloïse hélène héðinn híram hólm hólmar hólmbert hólmbjörg hólmdís hólmfastur hólmfríður
hólmgeir hólmgrímur hólmkell hólmsteinn hólmþór hóseas hödd högna högni hökümə hörn hörður
höskuldur höður húbert húgó húmi húnbjörg húnbogi húndís húngerður húni húnn húnröður hüda
hükümdar hülya hümbət hümeyra hürdoğan hürmet hüryaşar hürüyet hüseyin hüseyn hüseynqulu hüsmen
hüsniyyə hüsnühâl hıfzullah hưng hương həci həcər həmid həsən həsənağa həzi iacob iain ian iancu
ianis iara iasmina ib ibaad iben ibeth ibidapo ibironke ibn ibolya ibraaheem ibraheem ibrahim
ibrani ibrohim ibun ibán ica icey icha icie icy ida idabelle idamae idda ide idell idella idika
idrees idris idriz idun idık ieremia iesa iesha ieshia ieva ifa ifeanyi ifechukwu ifeoma ifora
iftikhaar iftikhar ifunanya ige ignace ignacia ignacio ignacy ignas ignatius ignatz ignaz
ignazio ignác ignė igor igors ihab ihaia ihsaan ihsan ihtesham ihtiram ihtishaam ihtsham iida
iiris iisakki ijaya ijli ika ikbal ike ikenna ikeoluwa iker ikhlaas ikhsan ikin ikraam ikram
ikramah ikrimah ikshita ila ilah ilan ilari ilaria ilarie ilarion ilda ildefonso ildiko ildikó
ildız ileana ilene ilenia ilga ilgı ilhan iliana ilias ilie ilija ilinca ilir ilja ilka ilkka
illa illugi illya ilma ilmari ilmur ilmārs ilo ilona ilonka ilsa ilse ilyas ilyes ilze ima imam
imane imani imanol imants imany imara imaran imelda imene imer imke immaculate immanuel immanúel
immo immý imo imogen imogene imona imran imre imrich imron ina inaya inda indah indali indi
india indiana indie indira indra indrajit indrek indriði indriķis indrė indy indía indíana
indíra ine inell ines inese ineta inez infant ing-britt ing-marie inga inga-britt inga-lill
ingalill ingberg ingbert ingdís inge ingeborg ingeburg ingegerd ingegärd ingela ingelise
ingelore ingemar inger ingetraud ingetraut ingey ingheiður inghildur ingi ingiberg ingibergur
ingibert ingibjartur ingibjörg ingibjörn ingibjört ingiborg ingifinna ingifríður ingigerður
ingilaug ingileif ingileifur ingilín ingimagn ingimar ingimaría ingimunda ingimundur ingiríður
ingirós ingisól ingivaldur ingiveig ingiþór ingjaldur ingmar ingo ingolf ingram ingrid ingrida
ingried ingrún ingrīda inguna ingunn ingvaldur ingvar ingveldur ingvi ingólfur ingþór inioluwa
inka inken inkeri inmaculada inna innocent inocencio inocențiu insa inta intan inès inés inês
ināra ioan ioana ioanina ioannis iola iolanda ion iona ione ionel ionela ionelia ionică ionuț
iosefina iosif ippazio ira ireland irena irene iretioluwa irfan iriana iridenta iridian irina
irine irinel iris irja irl irma irmantas irmela irmeli irmengard irmgard irmhild irmi irmingard
irmtraud irmtraut irmtrud irmý irnanto irpa irsad irungu irva irven irvin irvine irving irwan
irwin irya iryna irène irén iréne irēna irıs isa isaac isaack isaak isabel isabela isabell
isabella isabelle isabelly isac isack isadora isadore isai isaiah isaias isak isaline isam
isamar isaque isaura isaya isaías ise iseoluwa isfandiyor isha ishaan isham ishani ishanvi
ishita ishmael ishola ishwar isiah isidor isidora isidore isidoro isidro isis isla islom ismael
ismail ismaël ismet ismo ismoil ismık isobel isolde isolina isom israel isreal issa issac issack
issi istvan istván ita itanya ituri itzel itziar iulia iulian iuliana iuliu iurie iustin iustina
iustinian iva ivah ivan ivana ivanka ivanna ivano ivar ivars iver iverson iveta ivette ivey
ivica ivie ivka ivo ivona ivone ivonne ivor ivory ivy iván iwan iwo iwona iyabode iyadunni iyana
iyanna iymona iza izaaz izabela izabella izabelle izabelė izaiah izayah ize izetta izidor izola
izora iztok iða iðunn iñaki iľja işin işıkay işıman işın i̇biş i̇brahim i̇de i̇diris i̇hsan
i̇kiz i̇klim i̇lahə i̇lalmış i̇lbek i̇ldem i̇ldeş i̇lgi i̇lham i̇lhamə i̇lim i̇lkanə i̇lkbahar
i̇lkim i̇lkin i̇lklima i̇lmafer i̇lnarə i̇lper i̇lqar i̇lqarə i̇lsu i̇lteriş i̇lyas i̇mam i̇mge
i̇mran i̇mren i̇mrihan i̇nançlı i̇narə i̇nayət i̇ncifir i̇nqilab i̇nsaf i̇ntihap i̇ntiqam
i̇ntizar i̇radə i̇rfan i̇sa i̇sak i̇sgəndər i̇slam i̇slime i̇smayıl i̇smet i̇smət i̇sra i̇srafil
i̇vecen i̇xtiyar i̇yiyürek i̇zel i̇zgü i̇zzət i̇çimbike i̇şcan jaabir jaafar jaak jaakko jaan
jaana jaanus jabal jabari jabbaar jabbar jabez jabir jabr jabulani jacalyn jace jacek jacey
jacinta jacintha jacinto jack jackeline jacki jackie jackline jacklyn jackson jacky jaclyn jacob
jacobine jacobo jacobus jacoby jacopo jacque jacquelin jacqueline jacquelyn jacques jacquez
jacquline jacqulyn jad jada jade jaden jader jadiel jadon jadranka jadwiga jadyn jaeda jaeden
jael jaelyn jaelynn jaeman jafar jafet jaffer jaga jagapati jagaraga jagat jagdish jagger
jagrati jagvi jahangir jahanzeb jahdami jahdari jaheem jaheim jahi jahiem jahir jahiz jahm
jahongir jai jaida jaiden jaider jaidyn jail jailene jailyn jaiman jaime jaimee jaimie jair
jairaj jairo jairus jais jajuan jaka jakayla jake jaki jakob jakobe jakobs jakobína jakop jakov
jakub jalaal jalal jaleel jalees jaleesa jalen jalia jalil jalisa jalissa jaliyah jalmari jalol
jalon jalsa jalyn jalynn jalə jamaal jamal jamalia jamar jamarcus jamari jamarion jame jameel
jamel james jameson jamey jami jamie jamie-lee jamie-leigh jamil jamila jamin jamir jamison
jamiya jammie jamshid jamya jan jan-erik jan-olof jan-peter jan-åke jana janae janaki janani
janay jane janeen janel janell janelle janene janessa janet janeta janeth janett janetta janette
janey janez jangwa jani janiah janic janice janick janie janik janin janina janine janis janiya
janiyah janja jankat janko jann janna janne janneth jannette janni jannie jannik jannika jannis
jano janos janosch january januja janus janusz janya janyce japhet japheth jaquan jaquelin
jaqueline jaquez jara jarad jared jaren jaret jarett jari jarkko jarl jarlath jarleth jarmila
jarmo jarne jarno jarod jarolím jaromír jaromíra jaron jaroslav jaroslava jaroslaw jarrad jarred
jarrell jarret jarrett jarrod jaruthip jaruwan jarvis jarwa jarwadi jarwi jarún jarþrúður jase
jasen jasiah jasin jasiri jaslene jaslyn jasmani jasmijn jasmin jasmina jasmine jasminka jasmit
jasmyn jasmyne jasmín jasna jason jasper jasur jaswadi jati jatin jatmiko jaunita javan javen
javi javier javiera javion javohir javon javonte jax jaxen jaxon jaxson jaxton jay jaya jayadi
jayce jaycee jaycie jaycob jayda jaydan jayde jayden jaydin jaydon jaye jayeng jayla jaylah
jaylan jaylee jayleen jaylen jaylene jaylin jaylinn jaylon jaylyn jaylynn jayme jaymes jayne
jayson jayvion jayvon jazlene jazlyn jazlynn jazmin jazmine jazmyn jazmyne jazmín jaël jean
jean-baptiste jean-charles jean-christophe jean-claude jean-françois jean-jacques jean-louis
jean-luc jean-marc jean-marie jean-michel jean-paul jean-philippe jean-pierre jean-pol jean-yves
jeana jeane jeanetta jeanette jeanie jeanine jeanmarie jeanna jeanne jeannette jeannie jeannine
jeannot jeanny jeb jebet jecinta jed jedediah jedidah jedidiah jeet jeevika jef jeferson jeff
jefferey jefferson jeffery jeffie jeffrey jeffry jefri jeison jeisson jekaterina jelagat jelani
jele jelena jelita jelka jelle jelte jemal jemima jemimah jemma jemutai jena jenaro jenel
jenelle jenetta jenifer jeniffer jenilee jenipher jenna jennette jenni jennie jennifer jenniffer
jennings jenny jenný jens jens-peter jens-uwe jensen jensína jente jenő jep jepchirchir
jepchumba jepkemoi jepkoech jepkorir jepkosgei jeppe jeptha jeptoo jerad jerald jeraldine
jeramiah jeramie jeramy jere jered jerel jereme jeremey jeremi jeremiah jeremias jeremie jeremy
jeremías jerguš jeri jerica jerilyn jerilynn jerimiah jerimy jerker jermain jermaine jerman
jermey jermiah jernej jerneja jerod jeroen jerold jerome jeromy jeronimo jerono jerop jerotich
jerrad jerrel jerrell jerri jerrica jerrie jerrilyn jerrod jerrold jerry jerson jerusha jeruto
jeryl jerzy jerónimo jerôme jes jesca jesenia jesica jesper jess jesse jessee jessenia jessi
jessica jessie jessika jessy jessye jessý jesus jesusa jesús jet jethro jetmir jeton jett jetta
jettie jevgeni jevon jewel jewell jezups jhalak jhan jhoan jhoana jhon jhonatan jhonny jhony jil
jiles jill jillian jim jimena jimmie jimmy jina jinawi jindra jindřich jindřiška jinjuta jinnie
jinthe jip jiri jitka jitrin jiřina jiří jo joachim joacim joakim joan joana joanie joann joanna
joanne joannes joao joaquim joaquin joaquina joaquín joash job jobe jobst jocelyn jocelyne
jocelynn jochem jochen jochum jodi jodie jody joe joel joell joella joelle joellen joep joerg
joeri joeseph joesph joetta joette joey joffrey johan johana johann johanna johannah johanne
johannes johans johathan john johnathan johnathon johney johnie johnna johnnie johnny johnpaul
johnson johnstone johny joi joke joko jokūbas jolana jolanda jolanta jolanthe joleen jolene
jolette jolie jolien jolijn jolina joline jolán jon jona jonah jonas jonatan jonathan jonathon
jonell jones joni jonna jonnie jonny jono jonás jonáš joojo joona joonas joonatan joost joppe
joram joran jordan jordana jorden jordi jordin jordon jordy jordyn jordán joren joretta jorge
joris jorja jorma jorn jort jorunn jory jorūnė jos jose josef josefa josefiina josefin josefina
josefine josefita joselin joseline joseluis joselyn josep joseph josepha josephat josephina
josephine josephus josette josh joshua joshuah josiah josiane josianne josie josiephine josip
josipa joslyn joso josphat josphine josse jossie jost josua josue josué josy josé josée
joséphine jouko jouni journey jovan jovana jovani jovanni jovanny jovany jovina jovita joy joyce
joycelyn joye joyline jozef jozefína jozo joão joé joël joëlle joško jožef jožefa jožica jua
juan juana juanita juanito judah judd jude judge judi judie judit judita judith judson judy
judyth juelz juergen juha juhana juhani juho jukka jule jules juli julia julian juliana juliane
juliann julianna julianne julie julie-anne julien julienne juliet julieta julieth juliette
julija julijana julio julious julisa julissa julita julius juliusz julián juluis juma jumaane
jumadi jumari juna june juni junia junie junior junious junius juozas juraj jure jurgen jurgita
juri jurij juris jurre jussi justas justen justice justin justina justinas justine justiniani
justo juston justus justyn justyna justína jusuf jutta juul juulia juuso juvenal juwan juwon
jyoti jyrki jytte ján jános járnbrá járngerður járngrímur játgeir játmundur játvarður jázmin
jérémie jérémy jérôme jéssica jóa jóakim jóann jóanna jódís jóel jófríður jóhann jóhanna
jóhannes jói jólín jómar jómundur jón jóna jónanna jónar jónas jónasína jónatan jónbjörg
jónbjörn jónbjört jóndís jóndór jóndóra jóney jónfríður jóngeir jóngerð jónheiður jónhildur
jóninna jónmundur jónný jónsteinn jónída jónína jóný jónþór jóra jórlaug jórunn jóríður jósafat
jósavin jósebína jósef jósefín jósefína jósep jósteinn jósúa jóvin józef józsef jökla jökull
jökulrós jörfi jörg jörg-peter jörgen jörgína jörmundur jörn jörri jörundur jörvar jörvi jørgen
júdea júdit júlia július júlí júlía júlían júlíana júlíanna júlíetta júlírós júlíus júní júnía
júníana júníus júrek jürg jürgen jüri jānis jāzeps jēkabs jēkaubs jędrzej jūla jūle jūlija
jūlijs kaamil kaan kaaren kaarina kaarlo kaashif kaat kaazim kabeer kabir kabiru kacey kachela
kaci kacie kacper kacung kacy kada kade kadeem kaden kadence kader kadijah kadin kadir kadri
kadyn kadınana kaeden kael kaela kaelyn kaelynn kafeel kahina kahir kahlil kahu kahurangi kai
kai-uwe kaia kaiden kaija kaila kailee kailey kailyn kaique kairav kaisa kaiser kaitlin kaitlyn
kaitlynn kaiya kaj kaja kajen kajetan kajji kajsa kajus kakali kaktus kala kalbi kaldi kale
kaleb kaleem kaleema kaleena kaleigh kalel kalen kalene kalervo kalevi kaley kalgay kali kalie
kalim kalina kaliyah kalla kalle kallie kalman kalmann kalmar kalpit kaltrina kaluwa kalvin
kalyn kamal kamala kamar kamari kamaria kamau kambali kamden kameron kami kamidin kamiel kamil
kamila kamilah kamilla kamilly kamilə kamma kamolchanok kamora kamran kamren kamron kamryn kamya
kamí kanak kanda kandace kandef kandi kandice kandy kane kanesha kani kania kanini kanisha
kanpulat kanye kaombwe kapagan kapitola kaprasíus kapítóla kara karaamat karabaş karaca karaer
karakucak karam karama karan karanbay karani karanja karataş karcan kardelen kardi kareem kareen
karel karen kari karie karim karima karimah kariman karimi karin karina karine karis karissa
karitas kariuki karja karkur karl karl-august karl-dieter karl-erik karl-ernst karl-friedrich
karl-georg karl-hans karl-heinrich karl-heinz karl-hermann karl-josef karl-jürgen karl-ludwig
karl-otto karl-peter karl-werner karl-wilhelm karla karlee karlene karles karley karlfried
karlheinz karli karlie karlijn karlinna karlo karlotta karlukhan karly karlína karlīna karma
karman karmen karna karol karola karolien karoliina karolin karolina karoline karolis karolyn
karolína karon karren karri karrie karsa karsana karson karsten karsyn karta karter kartika
karvel karya karyl karyme karyn karí karín karína karítas karó karólín karólína kasam kasandra
kasen kasey kash kashan kashangaki kashif kashish kashvi kasie kasim kasimir kasiran kasiyah
kaskazi kason kaspar kaspars kasper kassandra kassidy kassie kassim kastriot kastíel kasusra
kata katalin katalina katana katariina katarina katarzyna katarína katarínus katarīna katcha
kate katelijne katelin katelyn katelynn katerina katerine katerína kateřina kathaleen katharina
katharine katharyn katherin katherina katherine katherinne kathern katheryn kathey kathi kathie
kathinka kathleen kathlene kathlyn kathrin kathrine kathryn kathryne kathy kathyrn kati katia
katica katie katie-louise katina katinka katja katla katleen katlin katlyn katlynn kato katri
katrien katriina katrijn katrin katrina katrine katriona katrín katrína katrīna kattie katty
katy kató katý kauko kauri kauthar kaver kavon kavurt kavya kawaca kawaya kawkab kawthar kay
kay-uwe kaya kayagün kaycee kayden kaydence kaye kaygusuz kayla kaylah kaylan kaylee kayleen
kayleigh kaylen kaylene kayley kayli kaylie kaylin kaylyn kaylynn kayrabay kaysan kayson kayun
kayıt kazi kazim kazimierz kazimír kazuko kazuo kazım kaðlín kaşif keagan kealan keandre keanna
keano keanu keara keaton kecia keegan keelan keeley keely keena keenan keenen keesha keeva
kefser kegan keifer keijo keila keion keira keisha keith keji kelan kelby kelcie keld kelechi
keli kelis kellan kellee kellen kelley kelli kellie kelly kelly-anne kelly-marie kellý kelsea
kelsey kelsi kelsie kelton kelvin kelâmi kem kemal kemba kemboi kemuma kemunto ken kenan kenari
kendal kendall kendell kendra kendrick kenedy kenes keneth kenia kenisha kenji kenley kenn kenna
kennard kennedi kennedy kennet kenneth kenney kennith kennth kenny kent kenter kenth kenton
kenya kenyangi kenyatta kenyon kenza kenzie kenzo keon keran keri kerim kerime kerman kermit
kerri kerrie kerry kerstin kerttu kerubo kerwin kesha keshaun keshawn keshia kete ketilbjörg
ketilbjörn ketilfríður ketill ketilríður kevan keven kevin kevon keya keyaan keyla keyon
keyshawn kezban kezia keziah khaalid khaan khadidja khadija khadijah khaled khalid khalil
khalilah khamani khamisi khanyisile khari khiry khloe khoa kia kiaan kiah kian kiana kiandra
kianna kiano kiapo kiara kiaran kiarie kiarra kibafupia kibar kibet kibibi kiburi kick kiddý
kiefer kiel kiera kieran kiernan kieron kierra kiersten kieth kifaye kifayət kijana kijani kike
kikelomo kiki kiley kilian kiljan killian kilonzo kilían kim kimani kimanzi kimathi kimball
kimber kimberely kimberlee kimberley kimberli kimberlie kimberly kimbilio kimeu kimmo kimora
kimutai kimya kinaya kindra king kinga kingston kinley kinsey kinsley kinte kinubi kinuthia
kinyanjui kinyua kiojah kioko kip kipchirchir kipchumba kipenzi kipepeo kipkemboi kipkemoi
kipkirui kipkoech kipkorir kipkosgei kipkurui kiplagat kiplangat kiplimo kipngeno kipngetich
kipp kipras kiprono kiprop kiprotich kipruto kipsang kiptoo kipyegon kira kiramettin kirby kiri
kirk kirsi kirsten kirsti kirstie kirstin kirstine kirsty kirstín kirt kirui kisha kisima kit
kitan kitti kittie kitty kittý kiume kiwara kiya kiyasi kiyoko kiyoshi kizzie kizzy kjalar
kjallakur kjalvör kjaran kjartan kjarval kjeld kjell kjersti kjetil kjárr kjói klaas klara klas
klaudia klaudie klaus klaus-dieter klaus-günter klaus-jürgen klaus-michael klaus-peter
klaus-ulrich klaus-werner klavdija klavs klea klemen klemens klement klementína klemenz
kleópatra kliment kloe klothilde kládía klára kläre klængur knox knud knut knute knörr knútur
kobe koby kocabaş koda kodchaporn kody koech koen koenraad kofi koggi kojo koko kolawole
kolbeinn kolbjörg kolbjörn kolbrá kolbrún kolby koldan koldís kole kolfinna kolfinnur kolfreyja
kolgríma kolgrímur kolka kolmar koloman kolskeggur kolten kolton kolur kolviður koncagül kondo
konguralp konkordía konner konnor konný konrad konradi konradus konráð konstantin konstantinos
konstanty konstantínus konstanze konštantín kopan kora koray korbin korbinian kordell kordula
korede korey kori korinna korir korka korkmazalp kormlöð kormákur kornel kornelia kornelija
kornelius kornelía kornelíus kornél kornélia kort kortney korugan kory kosgei kosisochukwu
kotryna kotuz kourtney kovu koçak koçkan koðrán koşukhan kraig kraki kreszentia kreszenz
kriemhild kris krish krisha krishna krissy krista kristal kristall kristan kristaps kristberg
kristbergur kristbjörg kristbjörn kristborg kristdór kristel kristen kristens kristensa krister
kristers kristey kristfinnur kristfríður kristgeir kristgerður kristi kristiaan kristian
kristiane kristie kristien kristiina kristijan kristin kristina kristine kristinn kristián
kristiāna kristjan kristjana kristján kristjón kristjóna kristlaug kristlaugur kristleifur
kristlind kristlín kristmann kristmar kristmundur kristný kristof kristofer kristoffer
kristopher kristrós kristrún krists kristupas kristvaldur kristvarður kristveig kristvin
kristvina kristy kristyn kristíana kristíanna kristín kristína kristóf kristófer kristólína
kristýna kristþór kristþóra krisztina krisztián krisztofer kritika krišjānis krišs krištof
krummi krysta krystal krysten krystian krystin krystina krystle krystyna kryštof krzysztof kría
ksawery ksenija kuchanua kuddusi kujoe kujtim kullervo kulnun kumar kumral kumush kunaporn
kuncara kunibert kunigunda kunigunde kuno kunta kunthara kuria kurnia kurt kurtis kurunzi
kushtrim kusiima kustaa kusuma kutay kutgün kutun kveldúlfur kvetoslav kvetoslava květa
květoslava kwabena kwadwo kwaku kwamboka kwame kwamena kwasi kweku kweli kwesi kya kyalo kyan
kyano kyara kyla kylah kylan kyle kylee kyleigh kylene kyler kylian kylie kyllian kyllikki
kymani kyra kyree kyrie kyson kálmán kár kára kári károly kâmil kâzime käte käthe käthi kåre
kæja kévim kévin kókó kópur köker köktaş könül kösemen kövsər kübran künkyi kürşad kārlis
kęstutis kılıçbay kınel kırat kırgız kısmet kıvılcım kızıl kızıltunç kəmalə kəmaləddin kənan
kəramət kərim laban labeeb labib labinot labuh lacey lachlan laci lacie lacy lada ladarius
laddie ladina ladislau ladislaus ladislav ladislava ladli ladonna lady laeeq laetitia lafayette
lafe lage lahiah lahoma laia laika laila lailah lailati laimonis lainey laini laiq laisha laith
lajita lajlaj lajos lakeisha laken lakendra lakesha lakeshia lakisha laksana laksh lakshit
lakshmi lala lalita lalla lalo laly lalə laləzar lamar lamarcus lambert lamberto lameck lamine
lamiyə lamont lamonte lan lana lanang lance landan landen lander landin lando landon landyn lane
lanette laney langalibalele langat langgeng lani lanie lanita lanjar lannie lanny lantar laoise
laora laqeet laquan laquita lara lara-sophie larae laraine laras larisa larissa lark larkin
laron larry lars lars-erik lars-göran lars-olof lars-åke larue lary lascăr lashanda lashawn
lashonda lashunda lasmanto lasmono lasonya lasse lassi lassie laswi laszlo latanya latarsha
latasha lateef latesha latif latifah latika latisha latonia latonya latoria latosha latoya
latoyia latrell latrice latricia latrina laufar laufey laufheiður laufhildur lauga laugey
laugheiður laugi launa laura laurance laure laureano laureen laurel lauren laurence laurene
laurens laurent laurenz laurenția laurențiu lauretta laurette lauri laurian lauriane laurie
laurin laurina laurine lauris laurita laurits lauritz lauryn laurynas laus laust lautaro lavada
lavanya lavar lavelle lavender lavenia lavera lavern laverna laverne lavina lavinia lavon lavona
lavonda lavonia lavonne lavínia lavīze lawanda lawerence lawrance lawrence lawrencia lawson
lawton lawyer layla laylah laylo layne layth layton lazar lazaro laze laziz lazzaro lazăr lazım
laçın laëtitia laíla laís le lea lea-sophie leafy leah leala leamon lean leana leander leandra
leandro leaner leann leanna leanne leano leart leatha leatrice leda ledion ledün lee leeann
leela leen leena leeroy leesa leevi lega legawa leia leider leidy leif leifur leigh leighton
leiknir leikný leila leilani leire leisa leisha leitha leiðólfur lejla leke lekha lela lelah
leland lelar lelia lella lem lembah lemma lemmie lemon lempi lemuel len lena lenah lenard lene
leni lenin lenka lenn lenna lennard lennart lennarth lennert lennie lennon lenny lenon lenora
lenord lenore lenwood leo leocadia leocadio leokadia leola leoma leon leona leonard leonardo
leonce leoncio leone leonel leonhard leoni leonia leonid leonidas leonie leonor leonora leonore
leons leontin leontina leontine leontīne leonóra leopold leopolda leopoldina leopoldine leopoldo
leora leordean leota leoš lera lere leroy lerze les lesa lesana lesia leslee lesley lesli leslie
lesly less lessie lesta lester leszek leta letha lethia leticia leticija letitia letizia letiția
letta lettie letty letícia leva levar levente levern levi levie levin levina levis levon
levoslav levy leví lew lewis lex lexi lexie lexis lexus leydi leyla leyla-katharina leyli leyre
lezize leïla leó león leóna leónidas leónóra leópold lhanzey li lia liam lian liana liane lias
liban libardo libbie libby liberto liberty libia libni libor libuša libuše liceth licia lică
lida liddie lidia lidie lidija lidwina lidya lieke lien liene liepa lies liesa liesbet liesbeth
lieschen liesel lieselot lieselotte lieve lieven lieze lige ligia ligita liisa lila lilah
lilburn lili lilia lilian liliana liliane lilianna lilie lilija lilijana lilita lilja liljana
liljar liljurós liljá lill lilla lillard lillemor liller lilli lillia lillian lilliana lillianna
lillie lillis lilly lillý lilo lilou lily lilyan lilyana lilyanna lilý lim liman limar limazah
limon lina linah linas lincoln lind linda lindah lindar lindberg lindbergh linddís linde lindell
linden lindita lindsay lindsey lindy line linet linette lingný linh link linn linna linnea
linnie linnéa lino linsey lintang linton linus linwood linzy lio lioara lioba lionel lipika
liridon liridona lirim lirjan lisa lisa-marie lisandro lisanne lisbet lisbeth lise lise-lott
lise-lotte liselott liselotte liseth lisette lish lisha lisle lissa lissette lissi lissie lissy
listalín liston lita litha littie little littleton litzy liv liva livia livingstone livio liviu
liwia liya liyaaqat liyaqat liz liza lizabeth lizbeth lize lizete lizeth lizette lizz lizzie
lizzy ljiljana ljubica ljubisa ljubov ljudmila ljósbjörg ljósbrá ljósálfur ljótunn ljótur ljúfur
llewellyn lloyd lo loan lockie loda lode lodewijk lodovico loek loes lofn loftur loftveig logan
logey logi lohit loice loida lois loise lokbrá loke loki lola lolita lolla lollie loma lon lona
londisizwe londiwe london londyn lone loney long loni lonie lonna lonnie lonny lonzo loot lopa
lope lora loraine loran lorayne lorcan lore lorean loredana loree loreen lorelai lorelei loren
lorena lorene lorenz lorenza lorenzo loreto loretta loretto lori loria loriann lorie lorik lorin
lorinda lorine loring loris lorna lorne lorraine lorrayne lorri lorrie lossie lot lota lotfi
lothar lott lotta lotte lotti lottie lou louana louane louann louanna louella louetta loui louie
louis louisa louise louisiana louka loula louna lourdes lourenço lousie louvenia lova love
lovell lovett lovey lovie lovina lovis lovisa lovre lovro lovísa lowe lowell lowie loy loyal
loyce loyd loyola loïc loïs loðmundur lu luan luana luann luanne luara luay luberta lubomír
luboš luc luca lucas lucca luce lucențiu lucero lucetta lucette luchino lucho lucia lucian
luciana luciano lucie lucien lucienne lucija lucila lucile lucille lucina lucinda lucindy lucio
lucious lucius lucky lucrecia lucretia lucrezia lucreția lucrețiu lucy lucía luda ludger ludie
ludivine ludmila ludmilla ludo ludolf ludovic ludovica ludovico ludovicus ludvig ludvik ludvík
ludwig ludwina luděk lue luej luella luena luetta lugenia luhung luigi luigia luigina luis luisa
luisana luise luisina luitgard luiza lujza luka lukas lukasz luke lukita lukka lukman lukáš lula
lulah lular lulie luljeta lulla lulu luluh lulut lulzim lum luminița lumír luna lundi lungile
lunna lupe lupita luqmaan luqman lura lurana lurena lurhur lurline luster lut lute lutf lutfan
lutfi lutgarde lutgardis lutgart luther luthfi lutie lutz luuk luvenia luverne luvinia luwar
luwes luyanda luz luzia luzie luzius luzmira luís luísa lwandile lya lyam lyda lydell lydia
lydiah lydiane lydianne lydie lydía lykke lyla lylah lyle lyman lyn lyna lynda lyndia lyndon
lyndsay lyndsey lynette lyngar lyngheiður lynley lynn lynne lynnette lynsey lynwood lyric
lysiane lár lára lárensína lárent lárentíus láretta lárey lárus lászló lázaro lâle læla lærke
léa léana léandre léane léna léo léon léonard léonce léone léonie léontine léopold lér lía líba
líf lífdís lín lína línberg línbjörg líndís líneik líney línhildur líni lísa lísabet lísandra
lísbet lísebet lív lívia lóa lóreley lórens lórenz lúcia lúcía lúkas lúna lúsinda lúsía lúter
lúther lúvísa lúísa lúðvíg lúðvík lúðvíka lüfen lütfi lütfiyyə lýdia lýdie lýdía lýtingur lýður
lăcrămioara lėja lība līga līna līza lūcija ləman lətafət lətif lətifə maahir maaike maajid
maalik maanas maanav maaria maarit maarten maartje maawiya maaz maazin mabad mabel mabell
mabelle mable mac macarena macaria macario macarthur macauley mace macel maceo macey macharia
machelle maci macide macie maciej mack mackenzie macs macy mad madaha madalena madaline madalyn
madalynn madani madara maddalena madden maddison maddox maddux maddý made madeleine madelene
madelief madeline madelyn madelynn madge madhav madhavi madie madilyn madilynn madina madini
madisen madison madisyn madiyan madleina madlen madlyn madoa madonna madora mads madyan madyson
mae maebell maebelle maegan mael maeva maeve mafalda maftuna magali magalie magaly magan
magarete magda magdalen magdalena magdalene magdaline magdaléna magdolna magen magga maggey
maggi maggie maggy maggý magna magndís magne magnea magnes magney magnfríður magngeir magnheiður
magnhildur magni magnolia magnus magnús magnúsína magný magnþór magnþóra magret magrit magðalena
mahad mahala mahali mahalia mahalie mahaz mahbeer mahboob mahbub mahdee mahdi mahdy maheen maher
mahesa mahfooz mahfud mahfuj mahfuz mahi mahigül mahika mahir mahirə mahizər mahja mahlon
mahmood mahmoud mahmud mahmut mahnaz mahsun mahter mahulena mai maia maicol maida maie maighread
maija maik maike maiken maikol maila maimuna maimunah maina maingi maira maire mairead mairin
mairtin maisa maisha maisy maisə maite maitê maivi maiya maj maj-britt maj-lis maja majani majd
majdi majdy majeed majella majken major majvor makai makaila makala makan makara makarena makau
makayla makeen makena makenna makenzie makhi makini makokha makori maks maksim maksimiljan
maksur maksymilian maksüde makunga makuta makuu mal mala malachi malachy malak malakai malaki
malaya malcolm malcom male malea maleah malen malena malene malgorzata malia maliah malik malika
malin malinda malio malissa malissie maliyah maliza malla malle mallie mallorie mallory malorie
malou malte malthe malu malva malvin malvina malvína malwina malía malín mamadou maman mame
mamen mamie mammie mamun man manaaki manaf manah manaia manan manawa manbir manca manda mandi
mandie mandla mandlakhe mandy manel manerva manervia manford manfred manfreð manie manila
manilla manja manley manly mannie manning manola manole manolo manon mansfield manson mansurali
mantas manthan mantė manu manuel manuela manuelita manuella manuelle manus manya manúel manúela
maqsud mar mara mara-julie maraea maralyn maranda maras marbjörn marc marcantonio marcel marcela
marcelina marceline marcelino marcell marcella marcelle marcello marcellus marcelo marchello
marcheta marci marcia marcial marciano marcie marcin marcio marco marcos marcu marcus marcy
mardell mardís mare maree mareen mareike mareikura mareile marek mareks marel marela mareli
marella marely maren marese marey marfríður marga margana margaret margareta margarete
margaretha margarethe margarett margaretta margarette margarida margarita margarite margaritha
margarito margaréta margaud margaux marge margeir margene margeret margery marget margherita
margie margit margita margitta margo margot margoth margret margreth margrethe margrett
margretta margrieta margrit margrith margrjet margrét margrímur marguerite margueritte margunnur
margurite margus marguy margy marheiður mari maria maria-luise maria-theresia mariadi mariah
mariam marian mariana mariane marianela mariangela marianita mariann marianna marianne mariano
maribel maribeth marica maricel maricela maricica maricruz marie marie-ange marie-anne
marie-cecilie marie-christine marie-claire marie-claude marie-france marie-françoise
marie-hélène marie-jeanne marie-josé marie-laure marie-line marie-louise marie-luise
marie-madeleine marie-noëlle marie-paule marie-pierre marie-rose marie-sophie marie-theres
marie-therese marie-thérèse mariechen marieke mariel mariela mariele mariella marielle
marieluise marietta mariette marija marijan marijana marijke marijn marijón marika marikó
marilee marilena marilla marilou mariluz marilyn marilynn marin marina marinda marine marinela
marinella marinette marini marinka marino marinus marinó mario marioara mariola marion marisa
marise marisel marisela marisol marissa maristela marit marita maritta maritza marius mariusz
mariyah marián marja marja-leena marja-liisa marjaana marjan marjana marjanca marjani marjatta
marjeta marjo marjona marjorie marjory marjukka marjut marjón mark markas markel markell
marketta markita markku marko markrún markus markéta markó markús markþór marla marlana marland
marlaug marlee marleen marleigh marlen marlena marlene marleny marley marlie marlies marliese
marlin marlis marlise marlo marlon marly marlyn marlys marlyse marlène marlén marlín marlís
marni marnie marnita marnix marolyn maron maroof maroš marques marquez marquis marquise marquita
marri marrion marry mars marsa marsellíus marselía marselína marsh marsha marshal marshall
marsibil marsilía marsito marsudi marsý mart marta martaka martana martani marte marteinn
martell marten martez martha marthe marthen marti martial martijn martika martim martin martina
martine martino martirio martta martti marty martyn martynas martí martín martína maruša marva
marvel marvin marwa marwata mary maryadi maryam maryann maryanne maryanto marybelle marybeth
maryellen maryjane maryjo marylee marylin maryline marylou marylouise marylyn marylène maryse
maryvonne marzena marí maría maríam marían maríana maríanna marías marín marína marínella marínó
maríon marís marísa marísól marít maríuerla maríus marólína marý masako masao masar masika
masinde mason massiel massimiliano massimo massinissa masume mat matas mate matea matei matej
mateja mateo mateus mateusz matevž math matheo matheus mathew mathews mathias mathieu mathijs
mathilda mathilde mathis mathys mathéo mathías mati matias matic matie matija matilda matilde
matiu matjaž mato matouš mats matt matta mattea matteo matthea matthew matthias matthieu
matthijs matthilda matthildur matthäus matthía matthías matti mattia mattias mattie matts mattye
mattéo mattíana mattías mattína mattý matunda matyáš matéo matías matúš matěj matīss maua maud
maude maudie mauno maura maureen mauri maurice mauricette mauricio maurilio maurin maurine
maurits mauritz maurizio mauro maurus maury maurycy maverick mavie mavis mavuno max maxence maxi
maxie maxim maxima maxime maximiano maximilian maximiliano maximilien maximilián maximillian
maximino maximo maximus maxine maxwel maxwell maxx may maya maybell maybelle maye mayerly maykol
mayme maymie maynard maynur mayo mayra maysa mayte mazie mazlum maël maëlle maëlys maëva maía
maídís maísól maïté maşide maša maža mbithi mboya mbugua mburu mcarthur mcebisi mckayla mckenna
mckenzie mckinley meabh meadow meagan meaghan mearl mechelle mechthild mechthilde mechtild
mecide mecit meda medard media medina medora medėja meelis meera mees mefarettin mefharet meg
megan meggan megha meghan meghana meghann mehbarə mehdi mehdiqulu mehdiye mehin mehman mehmed
mehmet mehmetzahir mehrigül mehrimoh meibh meik meike meinhard meinolf meinrad meja mekhala
mekhi mekkin mekkinó mekkín mel melaha melania melanie melanine melany melba melbourne melchior
melchor melek meleknur melichar melihcan melikkan melina melinda melisa melissa melissia melita
melitta melker melkorka melkíor melkólmur mell melle mellie mellisa mellissa melodee melodie
melody melonie melony melrakki melrós melton melva melville melvin melvina melvine melvyn melwin
melánia melûl memili memphis mena menachem mendy menfeat mengi mengüç menişan mensalder mentor
meral merba mercedes mercer merche mercy mercyline merdi mereana meredith merel meret merete
merethe mergim meriem merijn merike merilyn merim merita merja merkúr merl merle merlene merlin
merlyn merna merri merrie merrilee merrill merrily merritt merry mert mertel mertie merton merva
merve mervi mervin mervyn merwin mery meryem meryeme meryl merzuk meshack messiah messíana
mestur mesude mesut meta metehan metha methúsalem metin metinkaya metka metod metrine metro
metta mette mettie metúsalem meveddet mevlüdiye mevlüt mey meyer meyhanim meyransa meyvant
mezide meşhur mia miah micael micaela micah micayla miceal micha michael michaela michaele
michail michal michala michale michaël michał micheal micheala michel michela michelangelo
michele micheletto michelina micheline michell michelle michelotto michial michiel michèle mick
mickael mickaël mickey mickie micky mie mieke miel miesha mieszko migdalia miglė mignon miguel
miguela miguelangel miha mihael mihaela mihai mihail mihajlo mihels mihhail mihin mihkel mihnea
mihrab mihriye mihály miia miika mijo mik mika mikael mikaela mikaelína mikaere mikaila mikal
mikala mikalah mikayla mikayıl mike mikeal mikel mikels mikhail mikjáll mikkael mikkalína mikkel
mikko miklós mikołaj mikuláš mikyas mila milada milagros milan milana milas milay milburn milcah
milda mildinberg mildred mildríður mile milena miles miley milford milica milissa milka milkah
milla millaray millard mille miller millicent millie mills milly millý milo milorad milos
miloslav miloslava milota milou milovan miloš milton miluše milán mima mimi mimmi mimoza mimy
mina minda mindaugas mindi mindy minenhle miner minerva minervia minh minibe minna minney minnie
minný minodora minor minoru minta mintie minurə mio mioara miodrag mira mirabela miracle miran
miranda miray mirbadin mircea mirco mirdza mireia mireille mirela mirella mireya miriah miriam
miriama mirian mirja mirjam mirjami mirjana mirko mirlinda mirna miro miron mirona mironshoh
miroslav miroslava miroslaw miroslawa mirra mirriam mirsad mirta mirte mirtha mirthe mirtie
miruna miryam mirzə mirəli misael mischa mishat mislav misra missie missouri missy mist misti
mistie misty misuli mitali mitch mitchel mitchell mitchelle mitesh mitică mitra mitruț mittie
mitzi mitzy miya miyesser mizhir miķelis miłosz mjalldís mjallhvít mjaðveig mjöll mjöllnir
mjölnir mkarkara mladen mlungisi mnqobi moa modena modesta modesto modris modupe moe moesha
mofifoluwa mogens mohamad mohamed mohamedi mohammad mohammed mohamud mohand mohini mohinur
mohlaroyim moira moises moisés mojca mojisola mojisoluwa mojmír moli mollie molly momanyi mona
monalisa monica monicah monika monique monis monja monna monnie monroe monserrat mont montana
monte montel montgomery montie montrell montserrat monty moody mora moraa moradeke morayo
mordechai moreen morena morenike moreno morgan morgane moriah morine moritz morolake morris
morten mortimer morton mose moses moshe mosi mosinmileoluwa mossie mosunmola motunrayo mouloud
mounir mourad moureen mourib mourine moussa moya moyosore mozell mozella mozelle mrihani
mthokozisi muarra mubina mucahit muchiri muema mueni mufide mugambi mugdha mugendi muggur mugo
mugur mugurel muhallil muhamed muhamet muhammad muhammadali muhammadamin muhammadamir
muhammadayub muhammadaziz muhammadrizo muhammadsafo muhammadsodiq muhammadsolih muhammadumar
muhammadyasin muhammadyusuf muhammadziyo muhammed muhammet muharrem muhazzim muhima muhip muhiye
muhsina muhyettin muia muireann muiruri muizza mujde mujur mukbile mukhwana muktedir mulele muli
mulwa mulya mulyanto mulyono mumbi mumo mumpuni mumtoz munda mundheiður mundhildur mundína
munene mungai muni muninn munisa munyao munyoki murad murat muratcan murdock muriel murielle
muriithi murilo murimi murithi muriuki murl murod murphy murray murry mursalina mursinin mursita
murti musa musafet musaffa musau musee musembi musfira mushtariy musila muslim muslima mustafa
mustafo mustapha mustika mustofa musyoka musyoki mutai mutasım muthama muthengi muthoka muthoni
muthui mutia mutie mutinda mutiso mutisya mutluhan mutua mutuku mutunga muturi muvaffak
muvahhide muxlisa muxtar muzaffer muzayyana muzdahir muzdalifa muzhir mwamini mwanajuma
mwanamisi mwangangi mwangi mwaniki mwanzia mwasaa mwaura mwende mwendwa mwezi mwikali mwiti my
mya myah mychal myer mykel myla mylee myles mylie mylène myra myranda myriam myrkvi myrl myrle
myrna myron myrra myrta myrtha myrthe myrtice myrtie myrtis myrtle mzamo mábil málfríður
málhildur málmfríður mánadís máney máni már mára márcio mária mário márk márta márton márus
mátyás máté máxima máximo märta märtha måns mårten mégane mélanie mélina mélissa mélodie mía
mías mímir mínerva mír míra míranda mítra míó módís móeiður móey móheiður móna mónica mónika
móníka móri móric mórits móses móði möhsim mörk mörður múli mübariz mübetcel mücellib mücevher
müferrih müfit müjde mükramin mükrüme mülayim mülâyim mümtaz mümtaze münezzer münif müntəzir
münəvvər müret mürit mürsəl müsemma müslum müslüm müveddet müzekker müzəffər müğber müşkünaz
müşüre mýr mýra mýrkjartan mýrún māra māris mārtiņš mārīte mădălin mădălina mălina mărioara
măriuca mədinə məhru məhəmməd məhərrəm məlahət məleykə məmməd mənsur mənsurə məryəm mərziyyə
məsmə mətanət naadir naail naajy naasih naasir naathim naazhim nabeeh nabeel nabhan nabigh nabih
nabil nabila nacer nachiket nacho nacio nada nadeem nades nadeschda nadeshda nadežda nadhir
nadia nadim nadin nadine nadir nadja nadr nadège nadía naděžda nae naeem nael nafasat nafees
nafesa nafii nafile nafis nafula naglis nahashon nahiara nahidə nahla nahuel naiara naib naibə
naide nail nailə naim naima naimh nair naja najair najam najee najeeb najib najuma najwa naki
nakia nakif nakip nakisha nakita naksh nakul nalar naliaka nallely nalân nam namiq namon nan
nana nanci nancie nancy nand nandini nando nanette nanie nanjala nanna nannette nanni nannie
nanný nansý nanə naoimh naoise naom naoma naomh naomi naomy naomí napoleon napoleone naradi
narcis narcisa narciso narcisse narcissus nardi narfi narhanim narimane narji narıngül nas nasab
naser nash nashipie nasiba nasim nasir nasiru nasra nasrullah nassim nastja nasuf nat natacha
natalee natali natalia natalie natalija natalio natalja nataly natalya natalía natan natanael
nataniel nataníel natasa natascha natasha natasja natasza nataša natașa nate natella nath
nathalia nathalie nathaly nathan nathanael nathanaël nathanial nathaniel nathari nathasha nathen
natiq natividad natosha nattawun natália natálie natālija natəvan naud nautica naveen nawal
nayara nayaret nayareth nayeli nayely nayfa nayibe nayil naz nazaret nazario nazende nazi nazilə
nazim nazimet nazimə nazir nazlihan nazlim nazlı nazmi nazıdil naël naïm naómí nağı ndegwa
nderitu ndirangu nduku ndumiso ndunge ndungu nduta nea neal nealie nealy neasa nebih nebiha
nebojsa necati necdat nechifor necilal necmettin necva ned nedas nedda nedjma nedra needham neel
neelima neely neema nefaret nefiye neftalí neha nehemiah nehip neider neil neill neisti neja
nejc nejdet nekesa nel nela nelah nelcy nelda nele nelia nelie nelima nelio nell nella nelle
nelli nellie nello nelly nellý nels nelson nelsy nelu nelya nemanja nena nenad nenna nenni neo
neola neoma neppie neptúnus neptün nerea nereida neriban nerijus nerim neringa nermin nery nesfe
nesip neslinur neslisah nesrine nessa nestor neta nete netra netta nettie neva nevada nevaeh
neval neveah nevenka nevgin neville nevin nevio nevise nevsal nevsale newell newman newt newton
neyran nezengül nezihi nezize neşrin neža ngaire ngamia nganga ngari ngeni ngigi ngozi ngugi
nhiên nhlanhla nia nial niall niamh niara nibaldo nicanor nicat niccolò nichakarn nichelle
nichifor nichol nichola nicholas nicholaus nichole nicholus nick nicki nicklas nicklaus nickolas
nickson nicky niclas nico nicoară nicodemo nicodemus nicodim nicol nicola nicolae nicolai
nicolaie nicolaj nicolas nicolasa nicolaus nicole nicoleta nicoletta nicolette nicoline nicolle
nicolás nicolò nicu niculina niculiță nicușor nicuță nidhi nidia nidra niek niels nienke nieves
nigar nigel nigesa nihad nihai nihal nihan niharika niilo niina nik nika nikanor nikau nikhil
niki nikia nikita nikki nikko niklas niklaus niko nikodem nikol nikola nikolai nikolaj nikolajs
nikolaos nikolas nikolaus nikole nikolett nikoletta nikolina nikora niks nikulás nikíta nikólína
nikša nil nila nilam nilcan nilda nile niles nili nilima nilo nils nilson nilufar nim nimakoah
nimrat nina ninetta ninioluwa ninja ninna ninnie nino ninoska ninthe nira niracha nirgül nirja
nisa nisha nisə nita nitara nitesh nives nixon niyaga niyaz niyazi niyilolawa niðbjörg niğmet
njabulo njagi njenga njeri njeru njiru njogu njoki njoroge njozi njue njuguna njála njáll njóla
njörður nkazimulo nkiruka nnamdi nneka noa noah noam nobantu nobie noble nobuhle noe noel
noeleen noelia noeline noelle noemi noemie noemí nohely nohora noirin nojus nokulunga nola nolan
nolberto noleen nolen nolia nolie nollaig noma nomagugu nomalanga noman nomasonto nomathalente
nomathemba nomcebo nomthandazo nomusa nomvula nona nonhlanhla nonie nonjabulo nonni nonso noor
noora noortje noppakao nora norah norbert norberto norbey nore noreen norene noreta noretta
norica norina norine norita norma norman normand normann normunds norris north norton norval
norwood norðmann notburga nothando noud nour nout nova novella novi novruz noxolo nozibusiso
nozima nozizwe noé noémi noémie noël noëlla noëlle noëmi nqobizitha nrima ntimi nuala nubia
nugraha nuhu nula nuno nunzio nura nural nuran nuranə nuray nurbanu nurcan nurda nurdeniz
nuretdin nurettin nurey nurgil nurhayet nuri nuria nuriat nuriya nuriyet nurkan nurlan nurlana
nurmelek nurmuhammad nurseda nurser nursim nurtaç nurten nuru nurul nurulla nurullah nurveren
nury nurşan nurşən nutcha nutkrita nutwadee nuyan nuşirəvan nuša nwabudike nya nyaboke nyaga
nyah nyakundi nyamai nyambura nyana nyanchama nyasi nyasia nyawira nydia nyla nylah nynke nyoka
nyoman nyongesa nyoni nyota nyree nyuki nzioka nzomo nádia nándor náttmörður náttsól náttúlfur
nélida néstor níels níls nína níní nóa nóam nóel nói nóni nóra nóri nótt nóvember nökkvi
növrəstə númi núria nübar nüdret nürice nürəddin nüsrət nüşabə nýbjörg nývarð nəcəf nəfisə
nərgiz nəriman nərmin nərminə nəsib nəsimi nəzakət nəzrin oakley oana oba obaid obanijesu
obdulia obe obed obianuju obie obinna ocampo ochieng ocie octa octav octave octavia octavian
octaviana octavie octavio octaviu octavius océane oda odalis odalys odd odda oddbergur oddbjörg
oddbjörn oddfreyja oddfreyr oddfríður oddgeir oddgerður oddhildur oddi oddie oddkell oddlaug
oddleif oddleifur oddmar oddný oddrún oddsteinn oddur oddvar oddveig oddvör oddþór odelia
odeline odell odessa odette odhiambo odhran odie odika odile odin odina odis odkanlı odongo
oduor odus oeshi ofelia ofeliya offie oganer ogden ogechi ogooluwa oguş oisin oiva ojas ojasvi
okanay okbay oke okechukwu okello okey okgüçlü okoth okseven okta oktavía oktavíus okto októ
októvía októvíus oktüremiş okumu okyalaz ola oladare oladimeji olaf olajumoke olakunle olalla
olan oland olanrewaju olansile olar olasunmbo olav olavi olca oldağ oldrich oldřich ole oleg
olegario olen olena olene oleta olevia oley olfert olga olgeir olgierd olie olimpia olimpian
olimpiu olin olinda oline oliva olive oliver olivert olivia olivie olivier olivija olivine
oliviu olivér oliwer oliwier olle olli ollie ollý olof ololade oloo olov oluchi olufunke
olufunmilayo olumorotimi oluoch oluwafemi oluwagbemiga oluwakemi oluwamumibori oluwamuyiwa
oluwasanmi oluwasegun oluwole oluş olwen olwethu olympia olívia om oma omaca omair omaira omaja
oman omar omari omarion omeir omer omie omina omisha omkaar omobobola omobolanle omodunni
omolabake omolara omondi omosalewa omotara omotayo omotola omotoun omowumi omran omya ona onat
ondieki ondrej ondřej oneal oneida onesmus oneta oney ongay oni onie onkar onni onnie onofre
onuker onur onurcan onursu onveer onyango onyinye oona oonagh opal opan opha ophelia ophélie
opiyo opung opwonya oqtay ora orah oral oralia oran orange oranlı orazio orduxan orelia oren
orene oreofe orestas oreste orfelina orfeus orfhlaith orgün orhan oriana orie orilla orin
orinder orion oris orka orla orlagh orlaigh orlaith orland orlando orlena orley orlin orlo orma
ormar ormheiður ormhildur ormur orna ornella orpha orra orren orri orrie orrin orris orsolya
orson ortak ortansa ortrud ortrun ortwin oruç orval orvar orvel orvil orville orvin orvis
orvokki orxan orçin osa osama osbaldo osborn osborne oscar osha osie osiyo oskar oskari oskars
oskár osman osmo osogo ossama ossi ossian ossie osunleke osvald osvaldo osvalds oswald oswaldo
oswin ota otabek otakar otay otelia otfried otha othel othmar otho otieno otilia otis otkatla
otkell otmar oto otri ott otta ottavio ottfried otti ottie ottilia ottilie ottis ottmar otto
ottokar ottomar ottone ottó otur otávio otília otýlie otīlija ouanes ouida ouma oussama outi ova
ove ovid ovidio ovidiu ovila oviya owais owe owen owens owethu owino owuor oxana oyenike
oyindasola oymak oysha ozana ozansü ozell ozella ozie ozioma ozy ozzie oğulbaş oğurata oğuzman
oļģerts oľga paavo pabla pablo paca pachongruk paco pacífica pada padma padmi padraic padraig
padraigh padraigin page pahal paige paiman pairlee paisley paityn pak paker pakizə pakjira paksu
pallavi palle pallie palma palmer palmira paloma pam pamala pambe pamela pamelia pamella pamfil
panagachie panait panca pancho pandora pandu panfilo pangeran pangestu panini panji pankrác
pannawich pansy panya paola paoletta paolo paralee paramita paraschiva pardi paride parin paris
park parker parlee parley parman parmes parrish parsa parth parthenia parvez parís pascal
pascale pascaline paschal pascual pascuala pasi paskalia pasqual pasquale pastor pastora pat
patchaploy patcharaporn pate patience patrek patrekur patric patrica patrice patricia patricie
patricija patricio patrick patrik patrisía patrizia patrizio patryk patrícia patsy pattamon
pattapon pattatomporn patti pattie patty pau paul paul-gerhard paul-heinz paula paule pauletta
paulette pauli paulica paulien pauliina paulin paulina pauline paulino paulius paulo pauls
paulína paulīna pauric pavani pavao pavel pavla pavlína pavol paw pawan pawel paweł paxton paye
payten payton paz paşa peace peadar peader pearce pearl pearla pearle pearlene pearley pearlie
pearline pearly pearse peder pedro pedró peem peer peeter peggie peggy pehlil pekka pekkan
pelaji pelayo pelle pellegrino pembesin penelope penina peninah penni pennie penny pentti pepe
pepijn pepita pepito pepper per per-erik per-olof percival percy peren perinur peris perkasa
perla perley perlita permelia permun pernell pernilla pernille pero perri perrine perry pershing
pertti pervaiz pesent peta petar pete peter peter-michael peterson petr petra petrana petras
petre petrea petri petrică petrina petrișor petrona petronela petronella petronila petros petru
petrus petruț petruța petrína petrónella petrós petrún petrúnella petter petteri peyton phanice
phebe phelim phelix phenphitcha pheobe phil phileine philemon philip philipp philippa philippe
philippine philis phillip phillis philo philomena philomene phineas phoebe phoenix phubes
phylicia phylis phyliss phyllis phúc pia piaras piedad pien pier pierangelo pierce pierette
piergiorgio piergiuseppe pierina pierluigi piermaria piero pierpaolo pierre pierre-yves
pierrette piersanti piet pieter pieter-jan pietra pietro piia pijus pilar pili pim pina pink
pinkey pinkie pinkney pintusorn piotr piper pippa pirahmet piran piret pirjo pirkko pirmin
piroska pitipat pius pjetur pleas pleasant ples pleun pleșu plinio pluma plummer plácido pol
polad polina polk pollie polly pollý polona polonca pompeo pompilia pompiliu pomponio poncio
pontus pooja popobawa poppy porfirio pornchanok porsche porsha porter portia posey poul povilas
powell praba prabawa prabowo prabu prakosa prames pranata pranav pranawa praneel pranit prasetya
prasetyo pratt pratyush pravoslav prayitna prayoga prayogo preben precious predrag prentice
prentiss presley press preston price pricilla priit prima primitiva primitivo primus prince
princess prisca priscah priscila priscilla priscillah prisha priska priya profira prokop prosper
prudence prudencia prudencio prudie pryor przemysław pría príor puccio puck puji puk pumbaa
puntira puput purificación purity purl purwa purwadi purwanto pushti puspa puti putri putu pál
pála páldís páley pálfríður pálhanna pálheiður pálhildur páll pálmar pálmey pálmfríður pálmi
pálrún pálín pálína pánfilo päivi päivikki pär pål pénélope péter pétrína pétrún pétur pía pío
pünhan pürçek pătru pēteris přemysl pəri pərişan pərvanə pərvin pərvinə pərviz qaadir qaasim
qabeel qabil qadar qadeer qadi qadim qadir qahtan qaim qais qalib qamar qani qanit qaratel
qareeb qarin qaseem qasid qasif qasim qasım qatadah qawee qay-yoom qays qiana qiyas qori qoşqar
quadir quang qudamah quddoos qudoos queen queenie quentin quiana quincy quinn quint quinten
quinter quintin quinton quinty quique quirino qulam qulu qumru qurban qusay qushi qutaybah qutb
qutub qönçə qüdrət qızbəs qədir qələndər qənirə qəzənfər raaghib raagini raahil raakin raamis
raamiz raashid raatib rabah rabar rabb rabbaanee rabbani rabbiye rabea rabecca rabee rabi rabiah
rabih rabit racha rachael rachana racheal rachel rachelle rachid rachida rachit rachita rachèle
racquel rada radek radeke raden radha radhee radhika radi radika radim radit raditya radka
radmila rado radomír radoslav radoslava radosław radovan radovana radu radvilė radúz rae raed
raees raegan raekwon rael raelyn raelynn raewyn raf rafa rafael rafaela rafaella rafan rafay
rafaél rafaël rafał rafe rafee rafeek rafeeq raffael raffaela raffaele raffaella raffaellino
raffaello rafi rafia rafid rafih rafila rafiq rafn rafnar rafney rafnhildur rafnkell raghav
ragheb raghib ragna ragnar ragnbjörg ragner ragney ragnfríður ragnheiður ragnhild ragnhildur
ragúel rahab raharja rahat rahayu raheel raheem rahel rahiye rahma rahman rahmat rahmet rahmi
rahn rahsaan rahul raid raiden raifə raihan raija raik raili raimo raimondo raimonds raimund
raimundo raina rainer raisa raissa raivis raivo rajab rajata rajeshri rajko rakeem rakel rakide
raksha raleigh ralf ralf-dieter ralf-peter ralph raluca rama ramadan ramadhan ramazan ramid
ramil ramilə raminta ramiro ramiz ramon ramona ramsey ramunė ramzi ramón ramóna ramūnas rana
ranbir rance rand randal randall randalín randel randell randi randle randolf randolph randver
randy randíður randý rangga rani rania ranieri ranka rannva rannveig rannver ransom ranveer
raoul raphael raphaela raphaël raphaëlle raquan raquel rareș ras rasa rashaad rashaan rashad
rashawn rasheed rashid rashida rashidi rasim rasimə rasma rasmus rastislav rasul ratchanon ratih
ratna raul rauno raven ravi ravy rawiri ray rayaan rayan rayana rayburn rayfield rayford rayhona
rayla raymon raymond raymonde raymund raymundo rayna raynard rayne rayshawn rayyona rayén razi
raziyə razı raúl reagan reanna reason reatha reba rebeca rebecca rebecka rebeka rebekah rebekka
rebihat recep recepali red reda redden redmond reece reed reese reet refet refik refugio refur
regan regena regenia reggie regina reginal reginald reginbaldur reginbjörg regine reginn regis
regitse regitze regula regína regīna rehaan rehema rehime reid reidar reidun reifnir reijo
reilly reimar reimer reimund rein reina reinald reinaldo reinar reine reinel reiner reingard
reinhard reinhardt reinhart reinhild reinhilde reinhold reinis reino rejane reksa rella relu
remazan rembrandt remedios remi remigio remington remo remus remy remzi rena renaat renada renae
renaldo renan renard renata renate renato renaud rendy rene renea renee rengül reni renita
rennie reno rens renske renzo renáta rené renée reshoni resi respati ressie restu resulcan reta
retha reto retta rettie reuben reubin reva revza rex rexford rexhep rey reyansh reyes reyhan
reyhanə reyn reyna reynald reynaldo reynar reyndís reynheiður reynhildur reynir reynold reynolds
reyr reza rezin rezzak rhavi rhea rheta rhett rhian rhianna rhianne rhiannon rhoda rhona rhonda
rhys ria riad rian rianna rica ricarda ricardo riccardo ricci ricciotti rice rich richard
richardt richelle richie richmond richárd rick rickard rickey ricki rickie ricky rico rida ridge
ridhi ridwan rigmor rigo rigoberto rihanna rihards riikka riina riitta rik rika rikard rikharð
rikharður rikka rikke rikki riku riley rilla rillie rim rimantė rina rinaldo rinda rini rino
rinor ripley risa risalet risasi rishi risper risto rita ritchie ritt ritva river riya riyad
riza riziki rizki rizvan ričardas ričards roan roar rob robb robbe robbie robbin robby robert
roberta robertas robertina roberto roberts robin robinson robiya robley robt roby robyn rocco
rochdi rochelle rochus rocio rock rocky rocío rod rodah roddy roderic roderich roderick rodger
rodgers rodica rodney rodolfo rodolphe rodrick rodrigo rodrigue roe roel roeland roena rogelio
roger rogers rohaan rohan rohat roise roisin rojnu rojus rok rokas roko roksana roland rolanda
rolandas rolande rolando rolands roldán rolf rolf-dieter rolf-peter roll rolla rolland rollande
rollie rollin rollo roma romain romaine roman romana romane romanița romano rome romello romeo
romie romina romolo romona romuald romualdas romulus romy román roméo ron rona ronal ronald
ronaldo ronan ronda rondal roni ronin ronith ronja ronke ronna ronni ronnie ronny rono rony
ronya roope roos roosa roosevelt roque rory rorí rosa rosa-maria rosabelle rosalba rosalee
rosaleen rosalia rosalie rosalina rosalind rosalinda rosalinde rosaline rosalva rosalyn rosalía
rosamel rosamond rosann rosanna rosanne rosaria rosarie rosario rosaura rosco roscoe rose
rose-marie roseann roseanna roseanne rosel roselinde roseline rosella roselyn roselyne rosemarie
rosemary rosena rosenda rosendo rosetta rosette rosevelt rosey rosi rosia rosie rosina rosita
rosl roslyn rosman rosmarie ross rossa rossana rossie rostislav roswell roswita roswitha rosy
rotich rotraud rotraut rouven rowan rowena rowland roxana roxane roxann roxanna roxanne roxelana
roxie roxy roy royal royce roza rozalia rozalija rozanne rozella roziya rozália rua ruairi ruari
rubani rube ruben rubi rubie rubiela rubin ruby rubye rubén rudecindo rudi rudolf rudolfo
rudolph rudra rudy rudīte rueben ruedi ruel ruffin ruffus rufina rufino rufus ruggero ruggiero
rugilė ruhide ruhiu ruhiyyə ruhsat ruhshona ruhugül ruhəngiz rui ruie rukia rumaysa rumeysa rune
rungo runi runný runólfur rupert ruperta ruperto ruqayya ruqiya ruqiyyə rush rushil ruslan
rusman rusnė russ russel russell rustin rusty rusul rut ruta rute ruth rutha ruthann ruthanne
ruthe rutherford ruthie ruthild ruwaihim ruxanda ruxandra ruxsarə ruy ruzica ruža ružena ružica
ryan ryann ryder ryker rylan ryland rylee ryleigh ryley rylie rym ryma ryne ryszard rytis rytė
rza rán ráðgeir ráðhildur ráðvarður réginald régine régis régulo réka rémi rémy ríkarður ríkey
ríkharð ríkharður rín ríta ríó róbert róberta róbjörg rólant róman rómeó rómulo rós rósa
rósalind rósanna rósant rósar rósberg rósbjörg rósborg róselía rósenberg rósey rósfríður
róshildur rósi rósinberg rósinkar rósinkara rósinkrans rósinkransa róska róslaug róslind
róslinda róslín rósmann rósmary rósmarý rósmunda rósmundur rósný róza rózsa róża röfn rögn
rögnvald rögnvaldur rögnvar rökkvi röskva rövşanə rövşən röya röyal röyalə röðull rúbar rúben
rúbý rúdólf rún rúna rúnar rúndís rúnhildur rúrik rúrí rútur rübabə rübeyda rüdiger rüfət
rüknettin rümeysa rüşen răducu răzvan rıfkıye rūdolfs rūta růžena rəfiqə rəhilə rəis rəmziyyə
rəna rəqsanə rəsmiyyə rəsul rəxşəndə rəşad rəşid saabir saad saadat saadiq saafir saahir saaiq
saajid saal saalih saalim saanvi saaqib saar saara saariyah saba sabah sabahat saban sabar
sabari sabas sabastian sabatino sabbir sabeeh sabih sabihe sabil sabin sabina sabine sabiq sabir
sabirə sable saboor sabra sabri sabrina sabrína sabur saburah sabína sabır sacha sachi sacidə
sad sada sadaka sadan sadao sadaqat sadat saddam sade sadeed sadeti sadia sadie sadik sadiki
sadina sadiq sadittin sadiye sadye sadıq safari safet safia safina safinaz safiri safiya safta
safura safír saga sage sahibə sahil sahin sahir sahra sai said saida saidi saiful saige saim
saint sair sairah saire saka sakari sakarías sakina sakip saksham sakti sakura sal salah salami
salbjörg saldís saleh salena salgerður salih salim salima salimah salimet salina salka salkın
sallie sally salma salman salmann salmar salný salohiddin salome salomea salomey salomon salomé
salomón salsabila salud salurbay salvador salvar salvatore salvi salvör salwa salín salína
salóme salómon sam samahat samaksh samama samandar samanta samantha samar samara samarth samatha
samesh sami samiah samie samina samir samira samirə samiya samiyah sammie sammy samo sampson
samson samsul samu samual samuel samuele samuli samurtay samuël samwel samweli samy samúel sanaa
sanai sanavber sanaya sancak sancho sanda sandalio sandel sander sanders sandi sandie sandile
sandis sandor sandra sandri sandrine sandro sandu sandur sandy sanela sanford sani sanije sanita
saniya saniyah sanja sanjar sanjuana sanjuanita sanna sanne sanni sannie santa santana sante
santeri santiago santina santino santo santos santía sanur sanya sançar saoirse saood sapa
saphira sara sarabi sarafina sarah sarah-jane sarah-louise sarahi sarai sardor sargın sari
sariah sarina sarita sarmīte sarpkın sarrah sarthak sarunporn sarvan sarvar sarvinoz sarya
sarína sarıcabay sasa sascha sasha saskia sathvik satrettin satu saturnina saturnino satya satıa
saul saulius saumu saumya saundra sauti sava savak savana savanah savanna savannah saverio
saveta savilla savina savion savni savon sawyer saxi sayalı saydam saygın sayin sayrak sayın
saçı saïd saúl sağcan sağıt saša sašo scarlet scarleth scarlett scarlette schley schuyler scot
scott scottie scotty seaborn seamus sean sean-paul seana seanan seaneen seanna sebastiaan
sebastian sebastiano sebastien sebastijan sebastián sebastião sebastjan sebastían sebattin
sebigül seblâ sebrina seda sedat sedife sedrick sefanía sefer segilola segismundo segundo seha
sehel seif seifur seija seimur sejda selah selaheddin selatin selcan selcen seldon selena selene
seler selim selime selin selina seline selja selka selma selmer selmin selvi selâtin selçuk sem
semaj semat semender semenica semine semir semra semrin sena senad senan sencar seneca seniha
senn senna senne senol senora senta senía seona seosamh sep sepp seppe seppo septi septíma sera
seracettin serafina serafín serah seraina serda sereina serena serenity serezli serfinaz serge
sergei sergej sergey sergio sergiu sergius serhatmehmet serina serine serkan serma sernur serol
serpil server servinaz servác sesar seselía sesil sesilía sessa sesselja sesselía sessilía seth
setya sevara sevcan sevdi sevdinar seve sever severiano severin severina severine severino
severo severt severín sevgen sevginur sevican sevil sevim sevinc sevinch sevindik sevla sevsevil
seward seydo seye seyfulla seyfullah seyfəddin seyhan seyithan seymour seymur seyran seyyide
sezal sezen sezginbaş seçgül seçme shaban shad shade shadrack shae shafter shahina shahnoza
shahriyor shahzod shahzoda shaina shakila shakira shalon shalonda shamar shameka shamika
shamsuddeen shan shana shanae shanda shandra shane shaneka shanell shanelle shanequa shani
shania shanice shaniece shanika shaniqua shanita shaniya shanna shannan shannen shannon shanon
shanta shante shantel shantell shaquan shaquana shaquille shaquita shara shardae sharday sharde
sharee sharen shari sharif sharita sharla sharleen sharlene sharman sharon sharonda sharron
sharyl sharyn shasta shatara shaun shauna shauneen shaunna shaurya shavon shavonne shawana
shawanda shawn shawna shawnda shawnee shawnna shawnte shay shayla shaylee shayna shayne shea
sheamus shedrick sheela sheelagh sheena shehu sheila sheilah sheilla sheillah shekoni shelba
shelbi shelbie shelby sheldon shelia shelley shelli shellie shelly shelton shelva shelvia
shelvie shem shemar shena shenna shep shepherd sheree sheri sheridan sherie sherilyn sherita
sherlyn sherman sheron sherree sherri sherrie sherrill sherron sherry sherryl sherwin sherwood
sheryl sheryll sheyla shianne shida shiela shiloh shinead shira shirl shirlee shirleen shirlene
shirley shirleyann shirlie shivani shivansh shohjahon shohrux shoji shon shona shonda shonna
shpresa shqipe shravya shreya shukrona shyann shyanne shyheim shyla sian sibbie sibel sibilla
sibille sibonelo sibongile sibusisiwe sibusiso sibyl sibylla sibylle sid sidar siddharth siddie
sidiq sidiqə sidki sidney sidonia sidónia sie siebe siegbert siegfried sieghard sieglinde
siegmar siegmund siegrid siegried siegrun siegward siem sien siena sienna sierra sif sifa sifuna
sigbergur sigbert sigbjartur sigbjörn sigdís sigdór sigdóra sigfastur sigfinnur sigfreður
sigfrid sigfrido sigfried sigfríð sigfríður sigfús sigga sigge siggeir siggerður sighvatur
sigismund sigita sigjón siglaugur siglinde sigmann sigmar sigmund sigmunda sigmundur signa
signar signe signhildur signý sigri sigrid sigrun sigríkur sigríður sigrún sigsteinn sigtryggur
sigtýr sigur sigurbaldur sigurberg sigurbergur sigurbirna sigurbjarni sigurbjartur sigurbjörg
sigurbjörn sigurbjört sigurborg sigurbrandur sigurbára sigurd sigurdríf sigurdrífa sigurdís
sigurdór sigurdóra sigurey sigurfinna sigurfinnur sigurfljóð sigurgeir sigurgeira sigurgestur
sigurgrímur sigurgísli sigurhanna sigurhans sigurhelga sigurhildur sigurhjörtur sigurjón
sigurjóna sigurkarl sigurlaug sigurlaugur sigurleif sigurleifur sigurlilja sigurlinn sigurlinni
sigurliði sigurlás sigurlín sigurlína sigurmann sigurmar sigurmon sigurmunda sigurmundur
sigurnanna sigurnýas sigurnýjas siguroddur sigurpáll sigurrós sigursteina sigursteinn
sigursveinn sigurunn sigurvaldi sigurveig sigurvin sigurvina sigurást sigurásta sigurða sigurður
siguróli sigurósk sigurþór sigurþóra sigvaldi sigvard sigvarður sigyn sigþrúður sigþór sigþóra
sihawukele siim siiri sijuade siku sil sila silanur silas sile silfa silfrún silfá silja silje
silka silke silla sille silli silondile silva silvan silvana silvano silver silvester silvestre
silvestro silvia silvian silviana silvie silvija silvio silviu silvo silvía sim sima simas
simber simen simeon simi similoluwa simina simion simisola simiyu simmie simo simon simona
simonas simone simonetta simonne simphiwe simphiweyinkosi simpson simten simuzər simão simón
sina sinaida sinan sincere sinda sindre sindri sindy sine sinead sing sini sinică sinikka sinisa
siniša sintija siobain sioban siobhain siobhan siofra sione siper siphesihle sirac sirap siri
sirje sirkka siro sirpa sirra sirrý siska sisko sissel sister sitarə sithembiso siti sitiwat
sittik sittikorn siv sivert sixten sixto siya siyabonga sjafnar sjoerd sjöfn skafti skaidrīte
skapti skarpheiður skarphéðinn skefill skeggi skender skip skjöldur skolastika skorri skugga
skuggi skuld sky skye skyla skylar skyler skær skæringur skírnir skíði skúla skúli skúlína skúta
slade sladjana slamet slavica slavisa slavka slavko slavomír slavomíra slavěna slawomir sloane
slobodan sláva slávka smaranda smiltė smith smiður smyrill smári sneha sneider snezana snježana
snjáfríður snjáka snjófríður snjóki snjólaug snjólaugur snjólfur snorra snorri snæbjartur
snæbjörg snæbjörn snæbjört snæborg snæbrá snædís snæfríður snæhólm snælaug snælaugur snær
snæringur snærós snærún snævar snævarr snæþór snót socorro soffanías soffía sofi sofia sofiane
sofie sofija sofía sol solange sole soledad soleh soliha soline solma solmaz soloman solomon
solon solveig solvej solvita solène somadina somer sommer somtochukwu son sona sonad sonata
sondra sondre songurkan songül sonia sonja sonji sonnur sonny sonný sonya sophanías sophia
sophie sophie-louise sophie-marie sophronia sophus sophy soraia sorana sorawut soraya sorcha
soren sorin sorina sosimo souad soufiane souma soumia sowande soydaner soykan soykut soyselçuk
soňa spartakus spencer spenser speranța sphiwe sporði spring spurgeon spói squire srečko stacey
staci stacia stacie stacy staffan stafford stan stana stanca stancu stanford stanislaus
stanislav stanislava stanislaw stanisław stanka stanko stanley stanton stapi star starkaður
starla starling starr starri stasia stavros staņislavs steen stef stefaan stefan stefana stefani
stefania stefanie stefano stefanía steffen steffi stefnir stefán stefánný stein steina steinar
steinarr steinberg steinbergur steinbjörg steinbjörn steinborg steindís steindór steindóra
steiney steinfinnur steinfríður steingerður steingrímur steinhildur steini steinkell steinlaug
steinmann steinmar steinmóður steinn steinrós steinröður steinrún steinunn steinvarður steinvör
steinólfur steinþór steinþóra stela stelian steliana stella stellah stellan steluța sten
stephaine stephan stephane stephani stephania stephanie stephany stephen stephene stephenie
stephon sterling sterre stetson stevan steve steven stevie steward stewart stian stien stig
stijn stilla stina stine stirnir stiven stjarna stjepan stojan stone stonewall stoney storm
stormur stormy stuart sture sturla sturlaugur sturri styr styrbjörn styrgerður styrkár styrmir
styrr stéphan stéphane stéphanie stígheiður stígrún stígur stína stórólfur suat subomi subutiye
suci sudi sudie sudiksha sue suellen suhani sula suleiman sulhi sullivan sultane sumarliði
sumarlína sumarrós sumayya summer sumner sunay sunday sune sunel sungara sunna sunnefa sunneva
sunniva sunny sunníva sunshine supasit supasita suphi surya susam susan susana susanita susann
susanna susannah susanne suse susi susie sussanne sussie suus suvakit suvi suwijuk suzan suzana
suzann suzanna suzanne suze suzette suzie suzy suğra svafa svafar svala svali svalrún svan svana
svanberg svanbergur svanbjörg svanbjörn svanbjört svanborg svandís svaney svanfríður svangeir
svanheiður svanhildur svanhvít svanhólm svani svanlaug svanlaugur svanmundur svanrós svante
svanur svanþrúður svanþór svatopluk svatoslav svava svavar svea svein sveina sveinar sveinberg
sveinbjartur sveinbjörg sveinbjörn sveinborg sveindís sveiney sveinfríður sveingerður
sveinhildur sveinjón sveinlaug sveinlaugur sveinmar sveinn sveinrós sveinrún sveinsína sveinungi
sveinveig sveinþór sven sven-erik sven-olof svend svenja svenning sverre sverrir svetlana
svetozár sváfnir svätopluk svölnir svörfuður světlana swala swaleh swantje swen swetlana
syahrini sybil sybilla sybille syble sydell sydnee sydney sydni sydnie syed sylas sylgja sylivia
sylke sylva sylvain sylvaine sylvan sylvana sylvania sylvanus sylvester sylvia sylviane
sylvianne sylvie sylvio sylvère sylvía sylwia symone synnøve syreeta sys szabolcs szilveszter
szilvia szilárd szymon sándor sára sânziana sæberg sæbergur sæbjörg sæbjörn sæbjört sæborg sædís
sæfinna sæfríður sæhildur sæi sælaug sælaugur sæmann sæmunda sæmundur sæný sær særós særún sæsól
sæunn sævald sævaldur sævar sævarr sævin sævör sæþór sébastien sérgio séverin séverine sía
sílvia símon símonía sírnir sírus sísí síta sívar sófus sófónías sókrates sól sóla sólberg
sólbergur sólbjartur sólbjörg sólbjörn sólbjört sólborg sólbrá sólbrún sóldís sóldögg sóley
sólfríður sólgerður sólhildur sólimann sólkatla sóllilja sólmar sólmundur sólný sólon sólrós
sólrún sólveig sólver sólvin sólvör sólín sónata sónia sökmen sölmundur sölva sölvar sölvey
sölvi sölvína sönke sören sörli söyler sözer søren sørine søs súla súsan súsanna sübhan
sücaettin sücəddin südabə süha süheyda sükrü süleyla süleyman sümerya sümeyye süner sürəyya
süsen süvari süzer sýrus sıla sırriye sıylıhan səadət səbinə səbirə səbuhi sədaqət səfurə səfər
səhər səidə səlahəddin səlim səlimə səma səmayə səməd sənan sənubər səriyyə sərxan sərəncam
səxavət ta-tanisha taahaa taahir taaj taalib taamir taanish taariq tab taban tabassum tabatha
tabea tabetha tabish tabita tabitha taciddin tad tadas tade tadeen tadej tadeja tadeo tadeusz
tadeáš tadhg tafazal taft tagangül tage taha tahaw-wur tahawwur taheem tahir tahj tahmaseb
tahmeed tahmid tahoor tahseen tai taial taimur taina taine taisir taisto taj taja tajammal
tajammul tajudinn tajus takatifu takisha tal tala talal talan talat talayer talen talha talhah
tali talia talib talibe taliyah tallie talmadge talmage talon talía talıb tama tamala tamam
tamanna tamar tamara tamatha tamati tamaydın tamaşa tambika tambra tameka tamekia tamela tamera
tami tamia tamica tamie tamika tamiko tamilla tamisha tammi tammie tammy tamra tamu tamya tamás
tan tana tanak tanay tanbay tandoğdu tandri tandy tane taneli tanesha tangaroa tangela tanguy
tangül tanhan tania tanika tanimu tanish tanisha taniya taniyah tanja tanmayi tanner tanpınar
tanses tansev tansığ tantri tanveer tanvi tanya tanyolaç tanyu tanía tanır tapani tapio tara
tarah taraji tarak tarancı tarfaan tarfur tari tarik tariq tariyel tarja tarmo tarsha tartış
taru taryn tarzícius tasdik tasha tashina tasia tasnim tassilo tasvir taswir tate tatia tatiana
tatianna tatjana tatsuo tatu tatum tatyana tatyanna taufan taufik tauno taurean taurus tautvydas
tavares tavaris tavian tavion tavon tawana tawanda tawanna tawkeel tawny tawnya taya tayaydın
taygan tayla taylak tayler taylor tayshaun tayyibe tayyip taçnur taşar taşkan tea teagan teber
tecimer tecla ted teddie teddy tedi teea teela teemu teena teerth teetat tegan teguh teija
teitný teitur teja tejas tejs tekbay tekecan tekiner tekla teknaz teksoy telemaco telim tella
tellervo telly telma telman telmo telse temidayo temime temir temirhan temistocle temizkal
tempie temuçin tena tenika tenis tenisha tennessee tennie tennille tenvir tenzin teo teobaldo
teodor teodora teodoro teodors teodosia teodosio teofil teohari teona tera terance tercan tere
terell terence teresa terese teresia teresiah teresita teressa teresía tereza terezija terhi
teri terina terje terlan tero terra terrance terrell terrence terri terrie terrill terry terttu
teréz terézia tess tessa tessie teun teuta teuvo tevin tevs tex texanna texas texie teybet
teymur teymuraz teymurçin tezcan tezol teófila teófilo thabani thabisa thabisile thabiti thad
thaddeus thaddäus thalente thales thalia thanatcha thandazile thandeka thandiwe thando thea
theadore theda thedore thekla thelma thembeka thembekile thembile thembisile theo theobald
theodis theodocia theodoor theodor theodora theodore theodoro theodoros theodosia theodór
theodóra theola theophil theophile theres theresa therese theresia therman theron therése theta
theódór theódóra thi thiago thiare thibaud thibault thibaut thibo thierry thies thijmen thijn
thijs thilo thinhinane thom thomas thomasina thompson thomás thor thora thoralf thorben thorberg
thore thornton thorsten thorwald thos thresa thuo thure thurlow thurman thursa thurston
thuthukile thyra thành théa théo théodore théophile thérèse thór tia tiago tiana tianna tiara
tiare tiarna tiarnan tiarra tibe tiberia tiberiu tibo tibor tiburcio ticen tichomír tiegan tiera
tiernan tierra ties tiesha tiffani tiffanie tiffany tiia tiina tiit tiiu tijl tijmen tijn tijs
til tilda tilde tilden tilen till tilla tillie tillman tillmann tilly tilman tilmann tilo tim
timbul timea timm timmie timmothy timmy timo timon timotei timotej timoteo timothy timothée
timur timurtaş timéo tina tinca tincuța tindar tindra tindri tindur tine tineke tiney tinie
tinna tinne tinni tinnie tino tiny tira tirdad tirsa tirta tirtayasa tirza tisa tisha tishie
tishk titas titi titilayo titin tito titus tivadar tiziana tiziano tiğin tjaldur tjaša tjörfi
tjörvi tobe tobi tobias tobiasz tobie tobin tobiáš toby tobías toccara tod todd todda todor
todsawun tofiq toivo toker toki toktuğ tokunbo toköz tola tolbert tolli tollie tolonbay tolulope
toluwanimi tom toma tomas tomasa tomasz tomaž tomeka tomi tomie tomika tomislav tommaso tommi
tommie tommy tomo tomori tomris toms tomurcuk tomàs tomás tomáš tomé tonda tone toney tonguç
toni tonia tonicha tonino tonja tonje tonni tonny tony tonya toomas toon topias topuz tor tora
toralf torben torbjörg torbjörn torbjørn tord tore torey torfey torfheiður torfhildur torfi
torgny torhan tori toriano toribio torie torill torquato torrance torrence torrey torrie torry
torsten tory tosha toshiko toshio tova tove tovuz towanda toy toya toño toğan toğrul trace
tracee tracey traci tracie tracy trae traian traude traudel traudl traugott trausti traute
travis travon trayvon tre treacy treasa treasure treena tremaine tremayne trena trent trenten
trenton tresa tressa tressie treva trever trevin trevion trevon trevor trey treyton treyvon tri
tricia triin trilby trina trine trini trinidad trinity triona tripp tripti trish trisha trista
tristan tristana tristen tristian tristin triston tristán triveni triya troels trond trostan
troy trude trudel trudi trudie trudy true trula trumaine truman trung tryggva tryggvi tryggvína
trystan tránsito trú trúmann trīne tsuma tuan tuana tucker tudor tudora tudorița tudosia tuere
tufani tugiman tui tuija tukufu tula tule tulia tulio tullio tulun tumas tumi tunahan tunar
tunchanok tunguç tunradee tunçboğa tunçkılıç tuomas tuomo turabi tural turan turanə turcein ture
turgut turid turlough turner turvi turxan tutkucan tutkun tutu tuukka tuula tuuli tuulia
tuulikki tuur tuva tuyuğ tuğcan tuğrulhan tuğtaş tuğçe twan twila twyla ty tycho tye tyesha tygo
tyla tyler tylor tymon tymoteusz tyquan tyra tyree tyreek tyreese tyrek tyreke tyrel tyrell
tyrese tyrfingur tyrik tyrin tyriq tyrique tyron tyrone tyrus tyshawn tyson tânia téo tía tíbrá
tímea tími tímon tímoteus tímóteus tína tístran tóbías tóbý tói tóka tóki tómas tór tóta tõnu
törel tùng tú tükelalp tükəzban tülay tülin tümer tümkurt tünde tünzalə türabi türcan türkalp
türkan türkanə türkmen türknur tüzeer tüzenur týr týra tınal təhminə təranə tərlan ubaadah
ubadah ubaid ubaidah ubaldo ubay ubayd ubaydullah ubbi uberlinda uberto ubika ucchal uche
uchenna uchita uda udant udarsh udeera udo udyati ueli uffe ufukay uggi ugla ugnė ugo ugolino
uhban ujamaa ujunwa ula ulakbey uldis ulduz ulf ulfat uli ulises ulla ulla-britt ullrich ulrica
ulrich ulrik ulrika ulrike ultan ulu uludağ uluman ulutay uluğbey ulva ulya ulysses uma umaarah
umair umande umang umar umay umaya umberto umi ummahani umman umoja umut umutcan umuşan una
undine undína unggul uni unique unjani unknown unna unnamed unnar unnati unnbjörg unnbjörn
unndís unndór unni unnsteinn unnur unnþór uno uolevi upadhriti upasna upik upkaar upma ura
uraltay urbain urban urbano urfan urhan uriah uriel urijah urishilla urmas urmi uroš urrab urs
ursel ursina ursula urszula urte urvashi urvi urðar urður urša urška uršuľa us uschi ushan
ushindi usiku usman usmon usyi uta utama ute utkarsh utkucan utz uwe uxi uyanser uygun uzbay
uzima uzsoy uçan uçbeyi uğan uğur uğurkan uğurtan vacibe vada vadim vafir vagn vagna vagnbjörg
vagnfríður vahar vahid vahidə vahittin vaida vaidas vaishnavi vajèn vaka vakarė vakris vakur val
vala valarie valary valberg valbergur valbjörg valbjörk valbjörn valbjört valborg valbrandur
valda valdemar valdheiður valdi valdimar valdis valdís valdór valeh valencia valentijn valentim
valentin valentina valentine valentino valentín valentína valentínus valentīna valeri valeria
valerie valerij valerija valerio valeriu valero valery valería valeska valey valfríður valgarð
valgarður valgeir valgerða valgerður valhildur valid validə valija valinda valka vallary
vallaður vallie vallý valmar valmundur valný valon valorie valrós valrún valsteinn valter
valtteri valtýr valur valva valves valère valèria valér valéria valérie valéry valíant valý
valþrúður valþór vamakshi van vance vanda vander vanesa vanessa vania vanja vannie vansha vanya
vara varenya vargın varlık varmar varsha varvara vasana vasarė vasatika vasco vashon vashti
vasif vasil vasile vasilica vasilică vassie vassilios vasudha vasyl vatnar vaughan vaughn
vavrinec vaysal vazeh vecide veda vedant vedat vedhika vedika vedran veer veera veerle veeti
vefia vega vegard veig veiga veigar veigur veijo veikko veis veit vela velda veli velia velitdin
vella vello velma velta velva velvet vena venancio venceslás vendela vendelín vendula venera
veneranda venessa veniamin venice venie venita venla vennie venus veola ver vera verda verde
verdell verdie vere verena vergie vergil verim verl verla verle verlene verlie verlin verlon
verlyn vermundur vern verna vernal verne vernell vernelle verner verneri vernetta vernharð
vernharður vernia vernice vernie vernita vernon vero verona veronica veronicah veronika
veronique versa versie vertie verónica verónika veróníka vesa vesna vessie vesta vestar vester
vestmar veta vetrarrós veturliði veva veysəl vezat vezrife vi vibeka vic vicenta vicente
vicenția vicențiu vicie vick vickey vicki vickie vicky victoire victor victoria victoriano
victorine victorino victory victoría victória vicy vid vida vidadi vidal vidar vide vidhi viera
vieroslava viesturs vigdís vigfús viggo viggó vigilija vignir vigný vigo vigri vigtýr vigur
vihaan viivi vija vikar viking vikki viktor viktoria viktorie viktorija viktors viktoría
viktória vilayət vilberg vilbergur vilbert vilbjörn vilbogi vilborg vilbrandur vildane vilde
vildís vilfríður vilgeir vilgerður vilgot vilhelm vilhelmiina vilhelmina vilhelmína vilhjálmur
vilho vili viliam vilis vilius viljami viljar viljem vilji viljo villa villads ville villi
villimey vilma vilmar vilmer vilmos vilmundur vilnis vilný viltė vilém viman vina vinaya
vinbjörg vince vincenc vincent vincentio vincenza vincenzo vincențiu vinciane vineta viney
vinicio vinicius vinie vinjar vinko vinnie vinný vino vinsen vinson vinsý vinton vinzenz
vinícius viola violet violeta violetta violette viorel viorela viorica vira viraj virdie virge
virgel virgia virgie virgil virgilio virgill virginia virginie virginía virgle viridiana virman
virpi virág visar visarion visitación visvaldis vita vitali vitalija vitalis vito vitor vittoria
vittorio vitus vitória viva vivaan viveka vivi vivian viviana viviane vivianne vivien vivienne
viðar viðja viļums vjekoslav vjollca vlad vladimir vladimír vladimíra vladislav vladislavs vlado
vlaicu vlasta vlastimil vlora vlădelina voichița voicu vojtech vojtěch voldemārs volkan volker
volkhard volkmar vollie volney von vonda vonetta voney vonnie vopni vordís vorm vratislav vratko
vreneli vrinda vrishti vritti vuokko vurğun vusumuzi vyanjana vytautas vytė václav váli vápni
vár vâlâ vân väinö vébjörg vébjörn védís végeir végerður vékell vélaug vélaugur vémundur véný
véronique vésteinn víbekka víctor víf vífill vígdögg víggunnur víglundur vígmar vígmundur
vígsteinn vígþór víkingur vísa vít vítor vítězslav víðar víðir víóla víóletta víťazoslav vöggur
völundur vörður vöttur vüqar vüsal vüsalə vėjūnė věra vũ vəfa vəfadar vəli waahid waail waajid
waceera wachira wade wadee wadi wadood wafa wafae wafeeq wafi wafiq wafula wage wahab wahb
wahban waheed wahhaab wahhaaj wahyu waida waimarie wainaina waino wairimu wakeeta wakiman
walburga waldemar waldo waldtraut walentina walfried walid walker wallace walli wally walt
walter walther walton waltraud waltraut waltrud waluyo wamalwa wambua wambugu wambui wamwema
wanda waneta wangari wangila wangui wani wanita wanja wanjala wanjiku wanjiru wanjohi wannes
wanyama wanyonyi ward warda wardaya wardell wardi warhi waridi warinder warjas warji warner
warre warren warsa warsita warta warwick waseme wash washington wasin wasis wassaya wassim
watika watson watt wava waverly wawan waweru wayde wayland waylon wayman waymon wayne wazir
weaver webb webster weddy weena wekesa weldon wellington wells welton wenceslao wenche wencke
wende wendel wendelin wendell wendi wendolin wendy wenke wenzel wera werner wes wesley wesonga
wess wessel west westin westley weston wheeler whit whitley whitney wibke widisha widya wiebke
wieland wieslaw wigbert wikitoria wiktor wilber wilbert wilbur wilburn wilda wilder wiley
wilford wilfred wilfredo wilfrid wilfrido wilfried wilfriede wilhelm wilhelmina wilhelmine
wilhelmus wiliam wilkie will willa willaim willam willard wille willem willene willfried willi
willia william williams willian williard willibald willibert willie williemae willis willodean
willow willum willy wilma wilman wilmar wilmer wilson wilton wiltrud wim winda windell windy
winfield winford winfred winfried wing winifred winni winnie winnifred winny winona winston
winter winthrop winton wira wirda wiremu wirt wishi wisnu witold wladimir wm wojciech woldemar
wolf wolf-dieter wolf-dietrich wolf-rüdiger wolfgang wolfhard wolfram wong wood woodie woodroe
woodrow woodson woody worley worth wout wouter wriddhish wridesh wright wulan wulf wuraola wyatt
wycliff wycliffe wylie wyman wynona wálter xalak xalid xalidə xaliq xalisə xaləddin xamis xanana
xander xankişi xanlar xanım xatirə xaver xavi xavier xavər xena xenia ximena xiomara xiti xobeen
xolid xosrov xudaverdi xudayar xudu xumar xuân xzavier xénia xəlil xəyal xəyalə xəyyam yaa
yaakov yaaseen yachana yacine yada yadavi yadid yadiel yadigar yadira yael yafi yafir yaghnam
yagnesh yago yahaira yahia yahir yahvi yahya yahyaa yahyo yahşi yahşikan yair yaiza yajaira
yakobo yalazabay yalgın yaltırak yalçın yalın yaman yamar yameen yamid yamile yamilet yamilex
yamin yamini yamən yan yana yanara yance yancy yandel yanet yaneth yani yanick yanik yanina
yanira yanis yanisa yankı yann yannic yannick yannik yannis yaqeen yaqoot yaqub yar yara yareli
yaretzi yargı yaritza yasaar yasan yaseen yasemen yasemin yash yashasvi yashawini yashem yashica
yashoda yashodhara yashvi yasin yasina yasinta yasir yasmeen yasmin yasmina yasmine yasmín yasna
yasser yassin yassine yasti yasəf yasəmən yatan yathrib yatin yauvani yavuz yavər yaw yawar
yawer yayak yazan yazeed yazganalp yazgül yazmin yazmín yağın yağızkurt yaşar yaşattin yda yecid
yee yeferson yeganə yehuda yeimy yeison yejide yekbun yekda yelesen yeneral yeni yenifer yenny
yeny yepelek yeraz yergha yerko yerson yertan yesenia yesica yesid yesoob yessenia yessi yessica
yetişal yetta yetunde yewande yeşil yfke yigit yilmaz yina yineth yinthe ylenia ylfa ylfur ylja
ylur ylva ylvi ylvie ymir yngvar yngve yngvi ynja yoan yoann yocelyn yochana yoel yoga yohan
yohana yohane yolal yolanda yolande yolima yolonda yonatan yonathan yono yordan york yoruç yosef
yoselin yoshiko yoshio yoshita yosma youba youcef younes young youri yousef yousra youssef yrja
yrjö yrkill yrsa ysaline yudy yug yuli yulia yuliana yulieth yulisa yulissa yuly yuni yunis
yunita yunt yunus yurani yurany yurdanur yurdaser yureed yurem yuri yuridia yurtgüven yurtseven
yurttaş yury yusif yussuf yusuf yutika yuvraj yvan yves yvette yvon yvonne yésica yéssica
yönetmen yücel yücelen yümun yıldır yıldız yılma yəhya zaafir zaahid zaahir zaakir zabir zablon
zac zacarías zach zacharia zachariah zacharias zacharie zachary zachery zack zackariya zackary
zackery zada zadie zaeem zaenab zafar zafeer zafir zafrul zahaar zaharia zaheer zahfer zahi
zahid zahir zahnya zahra zahri zahro zahrun zahur zaib zaid zaida zaiden zain zainab zainabu
zaira zaire zaitra zaituni zak zakaria zakariyo zakary zakaría zakarías zakayo zakhele zakir
zakiyaxon zaliha zalindra zalán zaman zamfir zamfira zamin zamiq zamir zamira zana zander zandra
zane zaniyah zansi zara zarar zaraza zaria zariah zarina zarna zarəngiz zashil zauqi zaur zavier
zavion zaweel zayan zayd zayden zaynab zayne zayyan zayyir zbigniew zbyněk zdenka zdenko zdeněk
zdeňka zdislava zdravko zeb zebirce zebulon zechariah zed zeferino zehaan zehnia zehra zehranur
zejna zekayi zeke zeki zela zelaya zelda zelha zelia zeljko zella zelma zelpha zemfira zemzem
zena zenas zende zenia zennun zeno zenobia zenon zenovia zenta zenzele zenzile zerafet zerdad
zeride zeta zetta zettie zevlüde zewad zeynal zeynelabidin zeynep zeyno zeynulla zeynəb zeynəgül
zhane ziba zibeydə zibuyile ziedonis ziggy zigmund zigrīda zihni zikmund zilfa zillah zilmil
zilpah zilpha zimran zina zinal zineb zinhle zinnura zinnure zinət zion zipporah zita ziya
ziyaettin zizi zlatica zlatko zoa zoe zoey zofia zofija zoie zoila zoja zola zollie zoltan
zoltán zona zophanías zophonías zora zoraida zoral zoran zorica zorka zoé zoë zsanett zsigmond
zsolt zsombor zsuzsanna zsófia zuba zubayr zubeyde zuhri zula zulaikha zulema zulfa zulma
zumaridi zunilda zuwayhir zuwena zuzana zvonka zvonko zwatie zélie zóphanías zóphonías zöhrehan
zöhrə züfer züheyla zülbiye züleyxa zülfiyyə zülfüye zülgarni zümre zümrüd zəhra zəkəriyyə
zəminə zərdüşt zərif zərifə zərnigar ábel ádám áfrica ágata ágatha ágnes águeda ágúst ágústa
ágústína áki ákos álex álfar álfdís álfey álfgeir álfgerður álfgrímur álfheiður álfhildur álfrós
álfrún álfsól álfur álfþór álvaro ámbar ámundi ángel ángela ángeles ánh árbjartur árbjörg
árbjörn árbjört árdís árelía árelíus árgeir árgils árlaug ármann ármey árna árndís árney
árnheiður árni árnína árný áron árpád ársæl ársæll ársól árveig árvök áróra árún árþóra ás ása
ásberg ásbergur ásbjörg ásbjörn ásborg ásdís ásfríður ásgautur ásgeir ásgerður ásgils ásgrímur
áshildur ási áskatla áskell ásla áslaug áslaugur ásleif áslákur ásmar ásmundur ásný ásrós
ásröður ásrún ást ásta ástbjörg ástbjörn ástbjört ástdís ástfríður ástgeir ástgerður ástheiður
ásthildur ástmar ástmundur ástráður ástríkur ástríður ástrós ástrún ástvald ástvaldur ástvar
ástveig ástvin ástþrúður ástþór ástþóra ásvaldur ásvarður ásvör ásólfur ásþór áurea âdem âlemşah
ângela ângelo änne åbjørn åge åke åsa åse ægileif ægir æsa æsgerður æsir ævar ævarr çakar
çakırca çaltı çalım çamok çapkan çavuldur çağa çağdan çağlar çağlasın çağveren çelem çelikkan
çelikyürek çerçi çetinsu çeviköz çevregül çilga çimnaz çinarə çinerk çingiz çisem çiçək çokan
çolpan çopur çoğay çıdal çıvgın èric édgar édith édouard élisabeth élise élodie éléonore émile
émilie éric érica étienne éva ëakumbu ían ída ígor íma ími ína íngrid ír íren írena íris írunn
ísabel ísabella ísadóra ísafold ísak ísalind ísar ísarr ísbjörg ísbjörn ísdís íseldur ísey
ísfold ísgeir ísgerður íshildur ísidór ísis íslaug ísleif ísleifur ísmael ísmar ísmey ísold
ísrael ísrún íssól ísveig ísól ísólfur ítalo íunn íva ívan ívar íñigo óda ófeigur ófelía óla
ólafur ólafía ólafína ólavía óli óliver ólivía ólína ólíver ólöf ómar ómi ósa óscar ósk óskar
ósvald ósvaldur ósvífur ótta óttar óttarr óðinn öge ögmunda ögmundur ögn ögri ökkaş öktürk ölnir
ölrún ölveig ölver ölvir ömer ömriye ömür öncel öndólfur önel öngen önsal önundur örbrún örfiye
örik örjan örk örlaugur örlygur örn örnólfur örvar öryürek ösp össur östen över övün öxar özakan
özalpsan özaslan özay özbay özbilek özbilge özdal özdeş özdil özdoğdu özel özerdinç özertem özge
özger özgün özgür özinal özkent özkutlu özlem özlü özokçu özpetek özpınar özsözlü öztek öztürk
özyurt özçam özüdoğru öğet øivind øjvind ørni øvli øystein øyvind úa úddi úlfa úlfar úlfdís
úlfey úlfgeir úlfheiður úlfhildur úlfhéðinn úlfkell úlfljótur úlfrún úlftýr úlfur úlla úlrik úna
úndína úranus úranía úrsula úrsúla übeydullah üge ülfet ülfət ülke ülküdeş ülküm ülkər ülle ülvi
ülviyyə ümid ümmahan ümmet ümmühan ümray ünal ünek ünlen ünsever ünübol ürfettin ürper üsame
üstün üzer üzeyir üçgül ýja ýma ýmir ýr ýrar ýrr þalía þangbrandur þeba þengill þeyr þeódís
þeódóra þinur þiðrandi þiðrik þjálfi þjóstar þjóstólfur þjóðann þjóðbjörg þjóðbjörn þjóðgeir
þjóðhildur þjóðleifur þjóðmar þjóðrekur þjóðvarður þjóðólfur þoka þorberg þorbergur þorbjörg
þorbjörn þorbrandur þorfinna þorfinnur þorgarður þorgautur þorgeir þorgerður þorgestur þorgils
þorgnýr þorgríma þorgrímur þorgísl þorkatla þorkell þorlaug þorlaugur þorleif þorleifur
þorleikur þorlákur þormar þormundur þormóður þorri þorsteina þorsteinn þorstína þorvaldur þorvar
þorvarður þrastar þrymur þrá þráinn þrándur þróttur þröstur þrúða þrúðmar þrúður þula þura þurí
þuríður þurý þyri þyrnir þyrí þór þóra þóranna þórar þórarinn þórarna þórbergur þórbjörg
þórbjörn þórdís þórelfa þórelfur þórey þórfríður þórgnýr þórgrímur þórgunna þórgunnur þórhaddur
þórhalla þórhalli þórhallur þórhanna þórheiður þórhildur þórir þórkatla þórlaug þórlaugur
þórleif þórleifur þórlindur þórmar þórmundur þórný þórodda þóroddur þórormur þórsteina þórsteinn
þórsteinunn þórstína þórunn þórveig þórvör þórða þórður þórólfur þórörn þöll þúfa ādams ādolfs
ārija ąžuolas đuro đurđica ērika ēriks ēvalds ğanim ģederts ģirts ľubica ľubomír ľubomíra ľubor
ľuboslav ľuboslava ľuboš ľudmila ľudomil ľudomila ľudovít łukasz şaban şabettin şadıman şafii
şahat şahdiye şahinbey şahinder şahlar şahmar şahmettin şahnaz şahnuray şahvələd şahıgül şakir
şali şamiha şamil şamxal şanlı şavki şayan şazime şefi şefiye şehamet şehreban şehza şekim
şelâle şemsettin şemsinisa şendoğan şenkal şennur şerafeddin şeref şerman şevket şevketfeza
şeyda şide şilan şinasi şirin şirivan şirzad şuayp şöhret şövkət şükri şükufə şüküfe şükür şıxı
şəfa şəfiqə şəhla şəhrəbanu şəlalə şəmsiyyə şərafət şərəfəddin šarlota šarūnas šime šimon špela
štefan štefanija štefica štefka štefánia štěpán štěpánka šárka žan žaneta žanis željka željko
želmíra žemyna žiga žigmund živa živilė žofia žofie žygimantas șerban ștefan ștefana ștefania
əbdül əcəbnaz ədalət ədibə əflatun əhliman əhməd əhəd əjdər əkbər əkrəm əli əliş əliəkrəm
ələkbər ələsgər əmin əminə əmir əntiqə ənvər ərtoğrul əsgər əsmər əyyub əşrəf άγγελος άλκηστις
άνθιμος άννα άρης άριστος άρτεμις έκτορας έλλη έξαρχος ήβη ήλια ήρα ίκαρος ίρις ίων αίας αβραάμ
αγάθη αγάπη αγάπιος αγαθάγγελος αγαθή αγαθοκλής αγαθόνικος αγαμέμνων αγαπητός αγγελής αγγελική
αγησίλαος αγλαΐα αγνή αγόρω αδάμ αδαμάντιος αδαμαντία αηδόνα αθανάσιος αθανασία αθηνά αθηναγόρας
αθηνοδώρα αθηνόδωρος αικατερίνη αιμίλιος αιμιλία αιμιλιανός ακρίτας ακριβή ακριβός αλέξανδρος
αλέξιος αλίκη αλεξάνδρα αλεξία αλκιβιάδης αλκινόη αλκμήνη αμαλία αμβροσία αμβρόσιος αμφιθέα
αμφιτρίτη ανάργυρη ανάργυρος ανέστης αναγνώστης ανανίας αναξαγόρας αναστάσιος αναστασία ανατολή
ανδρέας ανδριανή ανδροκλής ανδρομάχη ανδρομέδα ανδρονίκη ανδρόνικος ανθή ανθούλα ανθούλης αννίκα
αντίγονος αντίπατρος αντιγόνη αντωνία αντύπας αντώνιος απολλωνία αποστολία απόλλων απόστολος
αρέθα αρίσταρχος αργυρούλα αργυρώ αργύριος αρετή αριάδνη αριστέα αριστείδης αριστομένης
αριστοτέλης αριστοφάνης αριστόβουλος αρτέμης αρτέμιος αρτεμισία αρχέλαος αρχιμήδης αρχοντία
ασημάκης ασημής ασημίνα ασημούλα ασκληπιός ασπασία αστέριος αστέρω αταλάντη αυγέρης αυγή
αυγουστίνα αυξέντιος αφέντης αφέντρα αφροδίτη αχιλλέας αχιλλεία αύγουστος βάγια βάιος βέρα
βαγιανή βαλάντης βαλάντω βαλέρια βαλέριος βαλεντίνα βαλεντίνος βαρβάρα βαρδής βαρθολομαίος
βαρσάμος βαρσαμία βασίλειος βασίλης βασιλεία βασιλική βεατρίκη βελισσάριος βελισσαρία βενέτιος
βενετία βενιαμίν βενιζέλος βερονίκη βερόνικα βησσαρία βησσαρίων βικέντια βικέντιος βικτωρία
βικτόρια βιολέτα βιργινία βλάσης βλάσιος βλαδίμηρος βλασία βρασίδας βρυσηίς βύρων γαβριέλλα
γαβριήλ γαλάτεια γαλάτιος γαλήνη γαληνός γαρυφαλλιά γαρύφαλλος γενοβέφα γεράσιμος γερακίνα
γερασιμούλα γεσθημανή γεωργία γεώργιος γιάννης γιαννούλα γιασεμή γιολάντα γιώργος γκίκας γκόλφω
γλαύκη γλυκερία γραμματική γρηγόριος δάφνη δέσποινα δήμητρα δήμος δίκαιος δαβιδούλα δαμασκηνή
δαμασκηνός δαμιανή δαμιανός δανάη δανιήλ δημήτρης δημήτριος δημοκράτης δημοσθένης δημούλα
δημόκριτος διαλεκτή διαμάντω διαμαντής διαμαντούλα διδώ δικαία διογένης διομήδης διονυσία
διονύσιος δομήνικος δούκισσα δράκων δροσιά δρόσος δωροθέα δωρόθεος δόμνα ειρήνη ειρηναίος ελένη
ελέσσα ελεονόρα ελευθέριος ελευθερία ελισάβετ ελισσαίος ελπίδα ελπίς εμμανουέλα εμμανουήλ
επαμεινώνδας επιστήμη ερασμία ερατώ εριέτα εριφύλη ερμής ερμιόνη ερμόλαος ερρίκος ερωτόκριτος
ερωφίλη ευάγγελος ευαγγελία ευανθία ευγένιος ευγενία ευδοκία ευδοξία ευδόξιος ευθαλία ευθυμία
ευθύμιος ευκλείδης ευλαμπία ευμένιος ευμορφία ευπραξία ευριπίδης ευρυδίκη ευρύκλεια ευσέβιος
ευσεβία ευσεβεία ευστάθιος ευσταθία ευστράτιος ευστρατία ευτέρπη ευτυχία ευτύχιος ευφροσύνη
εφραίμ εύα εύκλεια ζήνων ζαμπέτα ζαμπία ζαφείρης ζαφείριος ζαφειρία ζαχαρένια ζαχαρίας ζαχαρούλα
ζηναϊς ζηνοβία ζηνόβιος ζησούλα ζωή ηλέκτρα ηλίας ηλιάνα ηράκλεια ηρακλής ηρόδοτος ησαΐας ηώ
θάλεια θέκλα θέμης θέμις θέτις θαλής θαλασσινή θεανώ θεμιστοκλής θεμιστόκλεια θεοδοσία θεοδούλη
θεοδόσης θεοδόσιος θεοδότη θεοδώρα θεολογία θεολόγος θεοπίστη θεοτόκης θεοφάνης θεοφίλη θεοφανία
θεοφύλακτη θεοφύλακτος θεοχάρης θεοχαρούλα θεόδουλος θεόδωρος θεόκλεια θεόκλητος θεόπιστος
θεόφιλος θεόφραστος θεώνη θηρεσία θησεύς θουκυδίδης θρασύβουλος θωμάς θωμαίς ιάκωβος ιάσονας
ιάσων ιακωβίνα ιγνάτιος ιγνατία ιερεμίας ιερόθεος ιερώνυμος ινώ ιοκάστη ιορδάνης ιορδανία ιουλία
ιουλιανή ιουλιανός ιούλιος ιπποκράτης ιππολύτη ιππόλυτος ισίδωρος ισαάκ ισαβέλλα ισιδώρα ισμήνη
ιφιγένεια ιωάννα ιωάννης ιωακείμ ιωνάς ιωσήφ ιωσηφίνα κάρολος κίμων καλή καλλίνικη καλλίνικος
καλλιρρόη καλλιρόη καλλιόπη καλομοίρα καλυψώ κανέλλα καρυοφυλλιά κασσάνδρα κασσιανή κατερίνα
κερασιά κηρύκος κικιλία κλέαρχος κλήμης κλαίρη κλεάνθης κλειώ κλεομένης κλεονίκη κλεοπάτρα
κλεόβουλος κλεόπας κλημεντίνη κλυταιμνήστρα κοκκώνα κομνηνή κομνηνός κονδυλία κοραλία κορνήλιος
κορνηλία κοσμάς κρινιώ κρυστάλλης κρυσταλλένια κυβέλη κυδωνία κυπαρισσία κυπριανή κυπριανός
κυράτσα κυριάκος κυριαζής κυριακή κωνσταντία κωνσταντίνα κωνσταντίνος κωστούλα κόσμια κύρος
κώστας λάζαρος λάμπρος λάσκαρης λέανδρος λέων λήδα λαέρτης λαζαρία λαμπρινή λαοκράτης λασκαρίνα
λαυρέντιος λαυρεντία λεμονής λεμονιά λεονάρδος λευκοθέα λεωνίδας λεωνιδιά λεώνη λητώ λογοθέτης
λουίζα λουδοβίκος λουκάς λουκία λουκιανός λουλουδένια λυγερή λυδία λυκούργος λύσανδρος μάνθα
μάρθα μάριος μάρκος μένανδρος μίνωας μαγδαληνή μαγδαληνός μακάριος μακρίνα μαλαμάτη μαλαματένια
μαλβίνα μαντώ μαρία μαρίνα μαρίνος μαργαρίτα μαργιέττα μαριάνθη μαριάννα μαριγώ μαριλένα
μαρκέλλα μαρτίνος μαρωτέσα ματίνα ματθίλδη ματθαίος ματρώνη μαυρίκιος μαυροειδής μαυρούδης μαύρα
μαύρος μεγακλής μεθόδιος μελένια μελέτια μελέτιος μελίνα μελπομένη μενέλαος μερκούριος μερόπη
μεταξία μηλιά μηνάς μικές μιλτιάδης μινέρβα μιράντα μιχάλης μιχαέλα μιχαήλ μυρσίνη μυρτώ μόσχα
νέαρχος νίκανδρος νίκη νίκος νίκων ναθαναήλ ναπολέων ναταλία ναταλίνα ναυσικά νεκτάριος νεκταρία
νεοκλής νερατζιά νεφέλη νεόκλεια νεόφυτος νικήτας νικητία νικηφόρος νικολέτα νικολίτσα νικόδημος
νικόλαος νομική νταίζη ντανιέλα ξένη ξανθή ξανθίππη ξανθός ξενοφών οδυσσέας οδυσσεύς οδύσσεια
ολύμπια ορέστης ορφέας ουρανία πάρις πάτροκλος πέτρα πέτρος πίνδαρος παγώνα παναγής παναγία
παναγιώτα παναγιώτης πανδώρα πανορμίτης πανταζής παντελής παντελία παντελεήμων παντούλα πανωραία
παράσχος παρέσσα παρασκευάς παρασκευή παρθένα πασχάλης πασχαλιά παταπία παυλίνα παυσανίας παύλος
πελαγία πελοπίδας περικλής περικλεία περιστέρα περσεφόνη πηγή πηνελόπη πιερρίνα πλάτων
πλούταρχος ποθητή πολυζώης πολυκράτης πολυνίκη πολυξένη πολυτίμη πολυχρονία πολυχρόνιος πολύβια
πολύβιος πολύδωρα πολύδωρος πολύκαρπος πολύμνια πουλχερία πούλια πραξιτέλης προδρομία προκόπιος
προμηθέας πρόδρομος πυθαγόρας πωλίνα πύρρος ράλλης ρέα ρήγας ρίζος ραλλία ραφαήλ ραχήλ ρεβέκα
ρεβέκκα ρεγγίνα ρηγούλα ροδάνθη ροδαμάνθη ροδιά ροδόκλεια ροδόφλος ρουμπίνη ρούσα ρωμανός ρωξάνη
ρόζα σάββας σάρρα σέργιος σαββούλα σαλώμη σαμουήλ σαπφώ σαράντης σεβαστή σεβαστιανή σεβαστιανός
σελήνη σεμίνα σεραφεία σεραφείμ σιρανούς σμαράγδα σολομών σουλτάνα σουμέλα σοφία σοφοκλής σπάρτη
σπήλιος σπυράννα σπυρίδων σπυριδούλα στέλλα στέλλιος στέργιος στέφανος σταμάτης σταμάτιος
σταματίνα σταυρούλα σταύρος στεργιανή στεργιαννώ στεφανία στυλιανή στυλιανός συμέλα συμεωνία
συμεών συμεώνη σωζούσα σωκράτης σωτήρης σωτήριος σωτηρία σωφρονία σόλων σώζων τίμων τίτος
ταξίαρχος ταξιάρχης ταξιαρχία τατιάνα τερψιχόρη τζένη τζανέτος τηλέμαχος τηλεμαχος τιμοθέα
τιμολέων τιμόθεος τριαντάφυλλη τριαντάφυλλος τριανταφυλλιά τρισεύγενη τρυφωνία τρύφων τσαμπίκα
τσαμπίκος υάκινθος υακίνθη υβόννη υπαπαντή φίλιππος φαίδρα φαίδων φανή φανουρία φανούριος
φεβρωνία φερενίκη φιλήμων φιλίππα φιλαρέτη φιλιππία φιλιώ φιλοθέη φιλομήλα φλοριάντ φλωρίνα
φλωρεντία φλώρα φοίβη φοίβος φρίξος φραγκίσκος φραντζέσκα φρειδερίκη φρειδερίκος φρύνη φωκάς
φωκίων φωτεινή φωτεινός φώτιος χάιδω χάρη χάρις χαρά χαράλαμπος χαρίκλεια χαρίλαος χαρίτος
χαραλαμπία χιονιά χλόη χρήστος χρίστος χριστίνα χριστιάν χριστιάνα χριστοδούλα χριστοφόρα
χριστόδουλος χριστόφιλη χριστόφορος χρυσάνθη χρυσή χρυσαυγή χρυσαφένια χρυσοβαλάντιος
χρυσοβαλάντου χρυσοβαλάντω χρυσούλα χρυσόστομη χρυσόστομος χρύσανθος όθων όλγα όμηρος аарон
аблен авгия август августиан августин авдей авел авер аверкий аверно аверьян авигея авксентий
аво аврам аврели аврелий аврелій аврор автоном авторка агап агапи агапий агата агатопод агафон
агафья аггей агент аглай аглая аглоида агнен агнеш агнешка агоп агъци ада адалберт адам адамина
адеан аделин адем адра адриан адрианиа адриян аела аерозол азалия азар азарий айдемир айрен
акашия аким аксакусти аксентия аксидан аксинтия акулина алания алберт албина албияна алдин
алевандър алевтин алевтина алег алек алекзандриян александар александр александра александрина
алексей алексеј алексиа аленка алиана алина алисия алла алтая альберт альбіна аліна амалія амбър
амвросий амвросій амория амос ана анамария ананий анастасия анастасія анатолий анатолия ангела
ангелина ангелка андика андрей андреј андриана андрон андроник андрій анелина анета анжела
анжелика анза аникей аникита анимира анисим анита аница анна аномалия антип антоалина антон
антонела антонин антонина ануша анхея-мей аніта аполинария аполлинарий аполлон аралия арефий
аристарх аркадий аркадия аркадій арсен арсена арсений артем артемий архип аселина асифа аскольд
астромерия атанас атина аурора афанасий афиноген багра бажен балина бацислава беатрис бела
белисима беломира бенелена беримир берин берислава берия беро берослав бетина бетино бечо бея
билена билян билјана бинко биньо бисенти бисер бисера биянка благица благо благовест благодатка
благой благомир благосвет благосвета благој блаже бог богдалина богдан богданна богиня богодар
богой боголюб богомил богородка богослав богуслав богуслава бодромир бодурка божан божидар
божидара-силвестра божик божимир божин божинел божинела божко божо божур божурка боил боила
бойко бойчо болен болеслав боне бонислав бонифация бонко боно борена борис бориска борислав
борче борянка боца боян бојан бранко бригита бронислав бронислава будимир буна буча бързана
вʼячеслав вадим ваклина валентин валентина валерий валерия валерьян валерій валя вангелия ванухи
варвара варлаам варта варфоломей варфоломій васенка васил василий василина василиса василка
василь васка вацлав вашиля вежда велиана велимир велинна велиянка венда венедикт венеция
вениамин венислава венчислава веніямин вера верена верислава вероника веса веселин веселинка
весислав весна весо веспасиян ветко веца вечко вигалот виго виделин виден видима видин видое
видослав видю викенти викентий виктор викторин виктория вилиан вилизар вилизара вилислав вилия
вилиян вилхема винету винко вино винсънт винченцо виолет виолета виолин виржиния висарион
виссарион виталий витко витлян витомир витомира витош вихрен вихрони вихър вичо виша вишетин
вишка вишню влад владилен владилена владимер владимир владислав владлен владлена влас влатко
водица войнка володимир володимира всеволод всемил всеслав вула възкресения въльо върбунка въца
вышеслав вячеслав віктор вікторія віолетта віра віталій габи гаврила гаврило галактион галена
галентин галиен галимир галина галиян галя гани ганислав ганна гануца ганцомир ганчо ганьо гаро
гатьо гацо гвардиана гвоздейка гедеон гелемир гена генади генадивалериев генадий генислав генко
геннадий геннадій гено генчо гео геодим геомил георгелена георги георгий георгица георгій
герасим герга герган гергей гергелюб гергин гердан гердана герман геро герой гертруда герчо
гетислав гетко гето гецо гечо гешо гивеза гиздален гиздана гико гилдрой гичка глафира глеб гліб
горан гордана гордей гордій гория гостомысл гоца гоце графица гремислав грета григорий григорій
гримяна гроздинка гуна гурий гъда гълъбица гюгра гюргя давид давыд дакота дамяна дамјан дан
данелина даниел данила данило данимира даница данка данна данче дарданела дарина дария дарија
дарко дарья дафинка деа деви делиана делчо деля делян деляна демʼян дементий демид демир
демирела демьян демян дениандра дениз деника денимир денис денислав дениславена дениян денница
денчо дердидас десилиан десимиляна десимир десислав десияна деслав деспин деспинка деспот
детелин дефлорина дечко дечо дечю дешо дея деян дејан джана джанер джанко джиневра джихад
джон-стефан джулия диаманди диамантина диан диана-мария дивизие дивизия дивил дида дидко диего
дико дилмана дилян димитар димитра димка динна дмитрий дмитро добрина добромысл доброслав дойка
доменика доне доника дора-анна дорина дорофей доста доча драган драгана драгица дренка дуда
душан душка дюкяна евангелина евгений евгения евграф евдоким евдокия евлампий евпраксия евридика
евсей евстати евстатий евстафий евстахий евстигней евтим евфросиния егор едвин едит едита едрю
едуард екатерина еким ектар ектор ел елвис елдора елеан електрон елемаг елена еленица еленко
елеонета ели елиан елиас елиезер елиз елизабет елизабета елизавета елизар елин елина елиса
елисей елисия елица елко елма елфида ельо ема-бела еманоил емануел емануил емануила емельян емил
емилиан емилиян емилија емма емілія ендо еница енчо еньо еню епифан ервин ергана ередин еремей
еремия ерик ерина ермил ермиля ермолай ерол ерофей ерсен еріка есен естела етиен ефим ефимена
ефка ефрем ефросиния жаклин жанин жанна жара жарко жейна желязка женимира жива живомира жичка
жорка жулиана заварин завен заека замфир занго занка занко запрян зарко зафа зафер зафир захар
захари захарин захаринка захо звездан звездемира звездин звездислав звездиян звездолет звездомир
згура здравелин здравелина здравец здравко здравчо здухостина зенгин зика зинаида зинко зинови
зиновий зиновій златан златея злати златил златимир златиян златка златко златогор златозар
златомир златомира златослав златослава златоцвет златьо зоичка золтан зоран зорка зорян зосима
зоя зузичка ивалена ивамина иван иванеса иваничка иванка иванна ивелиана ивинка иглика игнатий
игор игорь изидора измаил изот изяслав иларион илеана илианна илинда илиомар илич илия илиян
илија илка илко илчо илья имилиан инан ингемунд инеса инко иннокентий инчо иосиф ипат ипатий
иполит ипполит ира ираида ираклий ириан ирин ирина ириней иринеус ириян ирко ирла ирма ирник
исай исак исидор исихия искрен искър исперих истан истатко истилияна истилян исус итко ихтиандър
ицо ичо ия йено йеремия йоан йоан-александър йоан-иво йоана йоанна йован йованка йовица йовко
йово йовро йовцо йовчо йожи йоил йоко йолина йолиян йолко йона йоника йорданка йосип йоханна
кадифейка казимир калея калина калиса каллистрат калуда камея камілла кануша капитон карамелита
карен карим карин карина карл карло кармен каролин карп карчо касиди касьян катакомб каталинка
катастрофа катерин катерина катинка каунка кветослава кевин кеворк керанка кери кети кибер ким
кимба кимбо кимон кимчо кин кинка кино кинта киприслав киприян кир кира кириен кирил кирилл
кирило кирка кирчо киряк киряки киряко кис кит кито китодар китомир китчица клавдий клавдия
клавдія клара клеуна клим климент клоя кнут козма койно койо койчо кокимира коко коле колчо
кольо колю комара комнин кондрат кондратий конон константин константина корнелия корнил коста
костадинка костянтин кралина красидара красияна криси кристабела кристиана кристина кристия
крсте кръстанка ксандриния ксения кузман кузьма кунка куприян кьнина лавр лаврентий лада ладимир
ладислав лазар лазарь лазура лалка лалко лало лальо ламби ламбо ламбю ланселот лариса ласкал
ласкар ластър латин латко латьо латю лаца леа-мария леандър лев левент левко левчо лека леко
ленин ленко ленче леон леонид леонтий леонтій леонід леопольд лесе лесь летисия лефтер лечо
либерта лидийка лидия лика лилия лилко лило лилчо лилян лилянка лилјана лимон лина линда липе
лихия личо лия ловчо лозан лозана лозанка лозен лонгин лора лора-софия лоранс лорена лоти лукʼян
лука лукан лукия луко лукьян лули лулчо луна лусио лусия лучезар лъчезарка любим любина люблина
любов любовь любомир любослава любосмысл людмила люляна люсила лянка ліза лілія магдалена мадлен
майя макар максим максимилияна максимильян малена малтина маноел манол манолина маноло мантас
мануил мануш манчестърюнайтед манчо маньо маню марʼяна мара-антоанета марангони маргарит
маргарита маргит марек марен мари-анри мариан марий марийка марин марина маринел маринета
маринчо марио мариоллита мариотка маритна мария мария-елена мария-хуана мариян марија марк
марк-антоний марко маркус марлена марта мартен мартин мартина мартиниян мартын мартьян маруся
маруш марфа марчело марія марјан маса маслина матвей матей матка матьо матю махно маша машо маја
медиан медиха мелания мелъди мено мерилин меропа месак метакса методи мефодий мечислав миглена
микита миколай мила милан милара милдия милен милена милиана милий милица милован милост мимоза
мина минка мир миранза мирена мирон миропа мирослав мирјана мисла митко митофан митошка михаил
михайлена михайлина михайло михей мишка младлена модест моисей мокей момера момчило моника
мортадела мстислав мушана мілена наводненка надежда надица надка надія назар наина найда найо
найчо наке нако нани нанко нано нансимир нанчо наню наркис нарцислав наско настимир настия
настрадин наталья наталія натан натанаил наташа натко наум нафисат нафтали нацко нацо начиян
начко начо невен невена невенко невилиян невян негослав негрита неделин неделчо неделяна
недислав недко недьо недю недялко нейка нейко нейчо нелида нелко нелла нелчо нене ненко
ненсислав ненчо неокли неолина нерес нестор нешка нигрита никандр никанор никита никифор никодим
никоела никола николай николина никон нина нинель нионила нифонт нона нонна норка нурета обретим
ованес огин огнемир огнен огнена одарка океан оксана оксенія октавия октябрина олег олек олекса
олександр олена олесь оливера олимпи олимпиада олимпий ольга омана омар омелян омуртаг оник
онисим онуфри онуфрий ончо опанас орест орина орися орлеана орлин ортодокси орфей орхидей
орхидея орхип орце осип оскар остап остромир оханес охрім павел павелин павилия павко павле
павлик павлин павлина павлинчо павло павломир паисий пако палвира палми палмиро паломина панай
панайот панас панда панде панделис пане панкрат панкратий панкртийян пано панталей пантелей
пантелеймон пантера панто пантю панфил панчо паолина парамон параскев параход парашкев
парашкеван парашкевица пармен парунка паруш парфен паско паспанахил пато патрик патриотка патьо
паулин паулина паун пахом паца пацо пачо пейко пейо пейодон пейолина пейтан пейчин пейчо пеко
пелагея пелай пеле пелина пенко пенчин пенчо пеньо пеню пео пепелота пепино пепислав пепо
периана перикъл персиана персиян перуна перчо петар петиконгрес петинка петкан петко пето петр
петраки петрана петре петрийка петринел петро петрозар петромил петромира петрушка пешка пилип
пимен пламена платон плодовитка полексина поликарп полин полина порфирий потап правда прасковья
преса прина пров прокл прокофий пролетина простисвета прохор прохір пріска пупи първолетка рада
радиа радим радимира радислав радка радован радосвета радостка раинка раиса райничка рамина
рангел рангел-любими рандю ранчо расате ратибор ратмир рафаил рачко рачо рашко рашо раю раян
реан ревка регина рем ренгия риана римма риналдо рис ристо ристя ричард ричерд рия роберт
роберто робин робърт рогелина рогена родан родион роза розалин розалія розана розета розин розка
розоцвет ройо роксан роксана роксолана роман ромел ромелина ромен ромео ромил ромолета ромул
роселина росен росенка росимир росислава роска роско ростиана ростимир ростислав ростислава
рубен ружка румислава русалия руска руслан рюрик сабина савва савватий савелий савета салина
самсон самуил санка сара сарая сахория сашо сања свежа светла светлана светломир светломира
светлю светозар светослав свидна свободка святополк святослав святослава світлана себастиан
себахтин севан севар севастин севастьян севда севдалин севдан севделина севелин северин севета
седеф седефчо селен селена селиван селиверст семен семенарка сенко серафим сергей сергелинка
сергій сеслав сибила сиви сигизмунд сидер сидония сидор сиен сиена сила силаги силан силантий
силвестър силви силвио силвия-александра силвиян сильвестр силян силяна симеон симо симон симона
синклитикия синтия сирман сисоя сифоня скакалка скорбут слав славдо славе славейко славен славея
слави славил славка сладоледка слободан смехотерапия смирна снежана снежинка сніжана сократ
соломон соломія софийка софия софија софон софрон софія соња спартак спас спасена спасияна
спирела спиридон стависара стаматка станиела станимир станимирка станислав станіслав сташа
стелина степан стефан стефани стефанија стеяна стоимена столетка стоян стоянка стојан сузана
сузи съвестина сърменка таисия тамара таня тарас татьяна ташимира тања твердислав творимир теа
телефонка темира теодор теодора теодоси теодосий теодослав теодостин теофан теохар тервел тереза
терентий теса тетяна тигрони тилиана тило тильо тимо тимон тимотей тимофей тимофій тимур тимчо
тино тинчо тит тиха тихо тихол тихомир тихон тишо тијана тоанета тоде тодомирка тодор тодораки
тодорин тодорина токимир толек толиана толю тома томас томе томен томинка томислав томо тона
тоне тони тонимир тонислав тоницвета тонко тончо топалко тополко тоска тотко тотьо тотю тоцо
тошка трајан трајче трендафила трифон трифонка трофим трохим троша труфана тръпка туфка улиана
ульян ульяна урима устим устин фабияна фадей фаина фатиме феврония федор федосий федот федір
феликс феня феоктист феофан ферапонт фикия филарет филатей фили филидан филимон филион филип
филипас филипини филипопол филипп филко филомир филчо фильо фимка финдо фиро фирс фирчо фичо
флавия флорентин флори флориан флорика флорин флоро фока фома фори фортунат фосил фотий фотинка
франк франц францислав фрацил фреди фродо фрол фронка фуга фуго фуко фъстък фьодор фёкла
хавтелин хана ханко хараламби харалампи харалан харбингър хари харизан харитон харитония
харлампий хасан хасатин хачо хвойне хебър хектор хенриета хераклит хернани хефестион химинай
хинка хинко хино хитко холи хома хороз храбрин храбър хранимир хранислава хрелко хрельо хрисанка
хрисим хрисимир хрисо христа христалин христела христивилин христиела христилиан христилияна
христина християн христо христо-никола христодор христоелена христозар христозорнициан
христозорницомил христомил христомир христослав христофор христя хрисчо хрондел хрусан хубав
хубавелка хубавен хубан хубен цанета царевна цвета цветан цветана цветанка цветелина цветилена
цветлина цветолилия цветяна цеца цола цоню цоня цоцо цочо цъки чавдар чана чанкете чанко чано
чаньо чардафон чардафона чародей чауш чачия чачо чвор чедо чедомир ченко ченю чепо череша
черноризец черньо чеслав четвърта чийо чико чило чона чонар чони чоно чоню чочо чочомир чубрик
чубрина чуде чудо чудомир чудослав чук шабан шана шанко шаноу шаро шейна шеки шена шенко шенол
шехерезада шибил шидер шинка шинко шино шипчан ширко шишман шкодри шмильо шмулю шпилко шушо
щедра щедрин щедю щеки щено щеню щериана щерион щериян щерко щерьо щерю щефания щилиян щилян
щилянка щирян щоно щтилка щтърбан щтъркан щурк щърбан щъркан ъглен ъгленка ълен ърнест ъруин
ърчо ъчка ьобирдар эдуард элеонора эмилия эмиль эммануил эраст эрнест эрнст ювеналий юги юлиан
юлиена юлий юлия юлиян юнона юрдан юри юрий юрита юстианна юстим юстин юстина юстиниан юхим
яблен ябленка явор явора яго ягода ягодин язо яким яко якоб яков якослав якуб яків ялислава ян
яна-мартина янадин янаки янакин яначко яне янег янедин янек яни яниел яник янимир янина янис
янислав яниславия яничко янка янко янкул яно яномил янтар януарий януш янцислав янче янчо ярема
ярина ярка ярно яромир ярополк ярослав ярослава ярце ярчо яръм ярю ясен ясена ясер ястреб ятан
ятана яцо ячо яшар яшка яшо яшон ѓорги ѓорче єва євген єлисавета єлисей єфрем іван ігнат ігор
ілля ірена ірина јане јасмина јован јована јовче
"""
